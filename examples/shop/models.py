"""The shop's tables: catalog, carts, orders, the credits ledger and payment reconciliations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from bastion import NAMING_CONVENTION, UTCDateTime
from bastion.auth import User
from bastion.search import SearchIndex

#: A cart line holds 1 to 99 of a product (shop-api.md, Cart).
MAX_LINE_QUANTITY = 99


def _now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def insert_into(session: Session, model: type[Base]) -> postgresql.Insert | sqlite.Insert:
    """An ``INSERT`` for ``model`` in the session's dialect, which has ``on_conflict_*``
    (an upsert is one atomic statement on both backends)."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)


class Category(Base):
    __tablename__ = "shop_categories"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    slug: Mapped[str] = mapped_column(String(100), unique=True)


class Product(Base):
    __tablename__ = "shop_products"
    __table_args__ = (
        # The list's default order and its filters: popularity first, then price.
        Index("ix_shop_products_popularity", "popularity_score", "name", "id"),
        Index("ix_shop_products_price", "price_cents", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    price_cents: Mapped[int] = mapped_column(Integer)
    stock: Mapped[int] = mapped_column(Integer, default=0)
    weight_grams: Mapped[int] = mapped_column(Integer, default=0)
    category_id: Mapped[int] = mapped_column(ForeignKey("shop_categories.id"), index=True)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # A bastion_files id, not a URL: responses sign a fresh, expiring URL to it.
    image_file_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    popularity_score: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now, onupdate=_now)


#: ``GET /products?q=``: a match in the name outranks one only in the description.
#: Declared on the app in catalog.py (which keeps it in step with ORM writes) and
#: created by migration shop_0005.
product_search = SearchIndex(
    "shop_product_search",
    cast(Table, Product.__table__),
    key="id",
    fields={"name": "A", "description": "B"},
    filters=["category_id", "is_active"],
)


class CartItem(Base):
    """One line of a signed-in user's cart, kept server-side for all their devices."""

    __tablename__ = "shop_cart_items"
    __table_args__ = (
        UniqueConstraint("user_id", "product_id"),
        CheckConstraint(f"quantity BETWEEN 1 AND {MAX_LINE_QUANTITY}", name="quantity_range"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The users table belongs to the platform's metadata: the column object (not the
    # name) lets the foreign key cross from the shop's metadata to it.
    user_id: Mapped[int] = mapped_column(ForeignKey(User.id, ondelete="CASCADE"))
    product_id: Mapped[int] = mapped_column(ForeignKey("shop_products.id"), index=True)
    quantity: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now, onupdate=_now)


class Order(Base):
    """A paid order. Amounts are cents: ``total = subtotal + shipping`` and
    ``charged = total - credits_applied`` (what the card paid)."""

    __tablename__ = "shop_orders"
    __table_args__ = (
        # A user's orders, newest first (GET /orders).
        Index("ix_shop_orders_user_created", "user_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey(User.id))
    status: Mapped[str] = mapped_column(String(16))
    """``paid`` or ``refunded``."""
    subtotal_cents: Mapped[int] = mapped_column(Integer)
    shipping_cents: Mapped[int] = mapped_column(Integer)
    credits_applied_cents: Mapped[int] = mapped_column(Integer)
    total_cents: Mapped[int] = mapped_column(Integer)
    charged_cents: Mapped[int] = mapped_column(Integer)
    shipping_method: Mapped[str] = mapped_column(String(16))
    shipping_estimated_days: Mapped[int] = mapped_column(Integer)
    shipping_provider: Mapped[str] = mapped_column(String(32))
    shipping_address: Mapped[dict[str, Any]] = mapped_column(JSON)
    payment_id: Mapped[str | None] = mapped_column(String(64), index=True)
    """The gateway's charge id; ``None`` when credits paid everything."""
    workflow_id: Mapped[str] = mapped_column(String(200), unique=True)
    """The checkout run that placed it: one order per run, whoever runs it."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now)
    payment_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    """When the gateway's ``charge.succeeded`` webhook confirmed the charge."""
    refunded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    refunded_to: Mapped[str | None] = mapped_column(String(16))
    """``card`` or ``credits``."""

    items: Mapped[list[OrderItem]] = relationship(
        order_by="OrderItem.id", cascade="all, delete-orphan", lazy="selectin"
    )


class OrderItem(Base):
    """What an order bought, with the name and price it had then."""

    __tablename__ = "shop_order_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(
        ForeignKey("shop_orders.id", ondelete="CASCADE"), index=True
    )
    product_id: Mapped[int] = mapped_column(ForeignKey("shop_products.id"))
    name: Mapped[str] = mapped_column(String(200))
    unit_price_cents: Mapped[int] = mapped_column(Integer)
    quantity: Mapped[int] = mapped_column(Integer)
    line_total_cents: Mapped[int] = mapped_column(Integer)


class CreditBalance(Base):
    """A user's credit balance: the sum of their ledger entries, kept as one row so that
    a debit is one conditional ``UPDATE`` that can never take it below zero, even when
    two checkouts spend at once."""

    __tablename__ = "shop_credit_balances"
    __table_args__ = (CheckConstraint("balance_cents >= 0", name="not_negative"),)

    user_id: Mapped[int] = mapped_column(ForeignKey(User.id, ondelete="CASCADE"), primary_key=True)
    balance_cents: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now, onupdate=_now)


class CreditEntry(Base):
    """One movement of credits: positive grants, negative spends."""

    __tablename__ = "shop_credit_entries"
    __table_args__ = (Index("ix_shop_credit_entries_user_created", "user_id", "created_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey(User.id, ondelete="CASCADE"))
    amount_cents: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(500))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("shop_orders.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now)


class Reconciliation(Base):
    """Money at the gateway that the shop's records do not account for (yet).

    Written when a charge's outcome is unknown (the call failed after it may have
    reached the gateway), when refunding a charge failed, or when the gateway reports
    a charge that no order holds. ``resolved_at`` is set once the money is settled,
    automatically (see ``payments.settle_reconciliation``) or by a person.
    """

    __tablename__ = "shop_reconciliations"
    __table_args__ = (Index("ix_shop_reconciliations_open", "resolved_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reason: Mapped[str] = mapped_column(String(32))
    """``charge_unanswered``, ``refund_failed`` or ``charge_without_order``."""
    charge_id: Mapped[str | None] = mapped_column(String(64), index=True)
    payment_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    """The idempotency key of the gateway call to repeat (a charge's or a refund's)."""
    amount_cents: Mapped[int] = mapped_column(Integer)
    payment_token: Mapped[str | None] = mapped_column(String(200))
    """The charge's token, to repeat an unanswered charge with the very same body."""
    workflow_id: Mapped[str | None] = mapped_column(String(200))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("shop_orders.id"))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    """Automatic settlement attempts so far."""
    resolution: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
