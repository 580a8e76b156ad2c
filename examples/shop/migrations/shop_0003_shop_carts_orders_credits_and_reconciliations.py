"""shop carts, orders, credits and reconciliations

Revision ID: shop_0003
Revises: shop_0002
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bastion.db.types import UTCDateTime

revision: str = "shop_0003"
down_revision: str | Sequence[str] | None = "shop_0002"
branch_labels: str | Sequence[str] | None = None
# The orders, carts and ledgers reference bastion_users.
depends_on: str | Sequence[str] | None = "bastion_0002"


def upgrade() -> None:
    op.create_table(
        "shop_credit_balances",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("balance_cents", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("balance_cents >= 0", name=op.f("ck_shop_credit_balances_not_negative")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["bastion_users.id"],
            name=op.f("fk_shop_credit_balances_user_id_bastion_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_shop_credit_balances")),
    )
    op.create_table(
        "shop_orders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("subtotal_cents", sa.Integer(), nullable=False),
        sa.Column("shipping_cents", sa.Integer(), nullable=False),
        sa.Column("credits_applied_cents", sa.Integer(), nullable=False),
        sa.Column("total_cents", sa.Integer(), nullable=False),
        sa.Column("charged_cents", sa.Integer(), nullable=False),
        sa.Column("shipping_method", sa.String(length=16), nullable=False),
        sa.Column("shipping_estimated_days", sa.Integer(), nullable=False),
        sa.Column("shipping_provider", sa.String(length=32), nullable=False),
        sa.Column("shipping_address", sa.JSON(), nullable=False),
        sa.Column("payment_id", sa.String(length=64), nullable=True),
        sa.Column("workflow_id", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("payment_confirmed_at", UTCDateTime(), nullable=True),
        sa.Column("refunded_at", UTCDateTime(), nullable=True),
        sa.Column("refunded_to", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["bastion_users.id"], name=op.f("fk_shop_orders_user_id_bastion_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shop_orders")),
        sa.UniqueConstraint("workflow_id", name=op.f("uq_shop_orders_workflow_id")),
    )
    with op.batch_alter_table("shop_orders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_shop_orders_payment_id"), ["payment_id"], unique=False)
        batch_op.create_index(
            "ix_shop_orders_user_created", ["user_id", "created_at", "id"], unique=False
        )

    op.create_table(
        "shop_credit_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["shop_orders.id"],
            name=op.f("fk_shop_credit_entries_order_id_shop_orders"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["bastion_users.id"],
            name=op.f("fk_shop_credit_entries_user_id_bastion_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shop_credit_entries")),
    )
    with op.batch_alter_table("shop_credit_entries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_shop_credit_entries_user_created", ["user_id", "created_at", "id"], unique=False
        )

    op.create_table(
        "shop_reconciliations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("charge_id", sa.String(length=64), nullable=True),
        sa.Column("payment_key", sa.String(length=255), nullable=True),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("payment_token", sa.String(length=200), nullable=True),
        sa.Column("workflow_id", sa.String(length=200), nullable=True),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["shop_orders.id"],
            name=op.f("fk_shop_reconciliations_order_id_shop_orders"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shop_reconciliations")),
        sa.UniqueConstraint("payment_key", name=op.f("uq_shop_reconciliations_payment_key")),
    )
    with op.batch_alter_table("shop_reconciliations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_shop_reconciliations_charge_id"), ["charge_id"], unique=False
        )
        batch_op.create_index("ix_shop_reconciliations_open", ["resolved_at", "id"], unique=False)

    op.create_table(
        "shop_cart_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "quantity BETWEEN 1 AND 99", name=op.f("ck_shop_cart_items_quantity_range")
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["shop_products.id"],
            name=op.f("fk_shop_cart_items_product_id_shop_products"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["bastion_users.id"],
            name=op.f("fk_shop_cart_items_user_id_bastion_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shop_cart_items")),
        sa.UniqueConstraint("user_id", "product_id", name=op.f("uq_shop_cart_items_user_id")),
    )
    with op.batch_alter_table("shop_cart_items", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_shop_cart_items_product_id"), ["product_id"], unique=False
        )

    op.create_table(
        "shop_order_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("unit_price_cents", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("line_total_cents", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["shop_orders.id"],
            name=op.f("fk_shop_order_items_order_id_shop_orders"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["shop_products.id"],
            name=op.f("fk_shop_order_items_product_id_shop_products"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shop_order_items")),
    )
    with op.batch_alter_table("shop_order_items", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_shop_order_items_order_id"), ["order_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("shop_order_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_shop_order_items_order_id"))

    op.drop_table("shop_order_items")
    with op.batch_alter_table("shop_cart_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_shop_cart_items_product_id"))

    op.drop_table("shop_cart_items")
    with op.batch_alter_table("shop_reconciliations", schema=None) as batch_op:
        batch_op.drop_index("ix_shop_reconciliations_open")
        batch_op.drop_index(batch_op.f("ix_shop_reconciliations_charge_id"))

    op.drop_table("shop_reconciliations")
    with op.batch_alter_table("shop_credit_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_shop_credit_entries_user_created")

    op.drop_table("shop_credit_entries")
    with op.batch_alter_table("shop_orders", schema=None) as batch_op:
        batch_op.drop_index("ix_shop_orders_user_created")
        batch_op.drop_index(batch_op.f("ix_shop_orders_payment_id"))

    op.drop_table("shop_orders")
    op.drop_table("shop_credit_balances")
