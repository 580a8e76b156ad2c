"""Factories for shop tests: users, products with known stock, filled carts, credits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import select

from bastion import Principal, Runtime
from bastion.auth import create_user, principal_for
from bastion.jobs import JobRow
from bastion.testing import BastionClient
from examples.shop.ledger import add_credits
from examples.shop.models import (
    CartItem,
    Category,
    CreditBalance,
    Order,
    Product,
    Reconciliation,
)

API = "/api/v1"

ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "12 Example Street",
    "city": "New York",
    "zip_code": "10001",
    "country": "US",
}
#: Cart changes the contract refuses ("P" stands for a real product's id), with the answer.
BAD_CART_CHANGES: list[tuple[str, str, dict[str, object] | None, tuple[int, str]]] = [
    ("POST", "/cart/items", {"product_id": 999_999, "quantity": 1}, (404, "not_found")),
    ("POST", "/cart/items", {"product_id": "P", "quantity": 0}, (422, "quantity_out_of_range")),
    (
        "POST",
        "/cart/items",
        {"product_id": "P", "quantity": 100},
        (422, "quantity_out_of_range"),
    ),
    (
        "POST",
        "/cart/items",
        {"product_id": "P", "quantity": 95},
        (422, "quantity_out_of_range"),
    ),
    ("POST", "/cart/items", {"product_id": "P", "quantity": "two"}, (422, "validation_failed")),
    ("PATCH", "/cart/items/P", {"quantity": 100}, (422, "quantity_out_of_range")),
    ("PATCH", "/cart/items/P", {"quantity": -1}, (422, "quantity_out_of_range")),
    ("PATCH", "/cart/items/999999", {"quantity": 1}, (404, "not_found")),
    ("DELETE", "/cart/items/999999", None, (404, "not_found")),
]
CARD = {
    "shipping_address": ADDRESS,
    "shipping_method": "standard",
    "payment_method": "card",
    "payment_token": "tok_visa",
}


def make_user(
    runtime: Runtime, email: str, *, name: str = "Shopper", roles: tuple[str, ...] = ("user",)
) -> Principal:
    """A user in the database (no password) and the principal requests act as."""
    with runtime.database.transaction() as session:
        user = create_user(
            session, runtime.passwords, email=email, password=None, name=name, roles=roles
        )
        session.flush()
        return principal_for(user, runtime.settings.auth.roles)


def make_product(
    runtime: Runtime,
    *,
    price_cents: int = 1000,
    stock: int = 10,
    weight_grams: int = 500,
    name: str = "Test Kettle",
) -> int:
    """A new active product (in a new category when there is none); returns its id."""
    with runtime.database.transaction() as session:
        category_id = session.scalar(select(Category.id).limit(1))
        if category_id is None:
            category = Category(name="Tests", slug="tests")
            session.add(category)
            session.flush()
            category_id = category.id
        product = Product(
            name=name,
            price_cents=price_cents,
            stock=stock,
            weight_grams=weight_grams,
            category_id=category_id,
        )
        session.add(product)
        session.flush()
        return product.id


def fill_cart(runtime: Runtime, user: Principal, lines: dict[int, int]) -> None:
    """Put ``{product_id: quantity}`` in the user's cart directly."""
    with runtime.database.transaction() as session:
        for product_id, quantity in lines.items():
            session.add(CartItem(user_id=int(user.id), product_id=product_id, quantity=quantity))


def grant_credits(runtime: Runtime, user: Principal, amount_cents: int) -> None:
    with runtime.database.transaction() as session:
        add_credits(session, int(user.id), amount_cents, "test grant")


def stock_of(runtime: Runtime, product_id: int) -> int:
    with runtime.database.read_transaction() as session:
        product = session.get(Product, product_id)
        assert product is not None
        return product.stock


def cart_lines(runtime: Runtime, user: Principal) -> dict[int, int]:
    with runtime.database.read_transaction() as session:
        rows = session.execute(
            select(CartItem.product_id, CartItem.quantity).where(CartItem.user_id == int(user.id))
        )
        return {row.product_id: row.quantity for row in rows}


def balance_of(runtime: Runtime, user: Principal) -> int:
    with runtime.database.read_transaction() as session:
        balance = session.get(CreditBalance, int(user.id))
        return 0 if balance is None else balance.balance_cents


def problem(response: Any) -> tuple[int, str]:
    """``(status, code)`` of a problem response."""
    return response.status_code, response.json().get("code")


def orders_of(runtime: Runtime, user: Principal) -> list[Order]:
    with runtime.database.read_transaction() as session:
        orders = list(
            session.scalars(select(Order).where(Order.user_id == int(user.id)).order_by(Order.id))
        )
        session.expunge_all()
        return orders


def jobs_named(runtime: Runtime, name: str) -> list[JobRow]:
    with runtime.database.read_transaction() as session:
        jobs = list(session.scalars(select(JobRow).where(JobRow.name == name).order_by(JobRow.id)))
        session.expunge_all()
        return jobs


def reconciliations(runtime: Runtime) -> list[Reconciliation]:
    with runtime.database.read_transaction() as session:
        records = list(session.scalars(select(Reconciliation).order_by(Reconciliation.id)))
        session.expunge_all()
        return records


def unrefunded(charges: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The gateway's charges that still hold money."""
    return [c for c in charges if c["refunded_cents"] < c["amount_cents"]]


@asynccontextmanager
async def client_of(runtime: Runtime, user: Principal) -> AsyncIterator[BastionClient]:
    """A client of its own acting as ``user`` (``acting_as`` is per client, so
    concurrent requests as different users need one client each)."""
    async with BastionClient(runtime.asgi()) as http:
        with http.acting_as(user):
            yield http
