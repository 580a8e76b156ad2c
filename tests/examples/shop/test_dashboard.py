"""``GET /me/dashboard``: the buyer's order totals, cached per caller and refreshed by
the commit that places (or refunds) an order (shop-api.md, Checkout and orders)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, update

from bastion import Principal, Runtime
from bastion.testing import BastionClient
from examples.shop.models import Order
from tests.examples.shop.conftest import ADMIN
from tests.examples.shop.shoppers import API, CARD, fill_cart, make_product, make_user, problem
from tests.support.gateway import PaymentGatewayProcess

pytestmark = pytest.mark.db


@pytest.fixture
def bastion_settings_overrides(payment_gateway: PaymentGatewayProcess) -> dict[str, Any]:
    return {"shop": {"seed_demo_data": False, "gateway_url": payment_gateway.url}}


async def _buy(client: BastionClient, runtime: Runtime, user: Principal, price: int) -> Any:
    """A card checkout of one product at ``price`` (standard shipping: 500 + 25 for
    0.5 kg, in the warehouse's zone); returns the order."""
    fill_cart(runtime, user, {make_product(runtime, price_cents=price): 1})
    with client.acting_as(user):
        response = await client.post(
            f"{API}/checkout", json=CARD, headers={"Idempotency-Key": f"buy-{price}"}
        )
    assert response.status_code == 201, response.text
    return response.json()


def _age(runtime: Runtime, order_id: int, days: int) -> None:
    with runtime.database.transaction() as session:
        session.execute(
            update(Order)
            .where(Order.id == order_id)
            .values(created_at=datetime.now(UTC) - timedelta(days=days))
        )


@contextmanager
def _orders_queries(runtime: Runtime) -> Iterator[list[str]]:
    """The statements that read ``shop_orders`` while the block runs."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "shop_orders" in statement:
            seen.append(statement)

    engine = runtime.database.read_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def test_the_dashboard_sums_the_callers_orders(
    client: BastionClient, runtime: Runtime
) -> None:
    ada = make_user(runtime, "ada@example.com")
    with client.acting_as(ada):
        empty = await client.get(f"{API}/me/dashboard")
    assert empty.json() == {
        "total_orders": 0,
        "total_spent_cents": 0,
        "last_order_at": None,
        "orders_last_30_days": 0,
    }

    old = await _buy(client, runtime, ada, 1000)
    refunded = await _buy(client, runtime, ada, 2000)
    latest = await _buy(client, runtime, ada, 3000)
    _age(runtime, old["id"], days=45)
    with client.acting_as(ADMIN):
        refund = await client.post(
            f"{API}/admin/orders/{refunded['id']}/refund",
            json={"reason": "damaged", "to": "credits"},
        )
    assert refund.status_code == 200
    with client.acting_as(ada):
        dashboard = (await client.get(f"{API}/me/dashboard")).json()
    # Refunded orders count as placed, not as money spent.
    assert dashboard == {
        "total_orders": 3,
        "total_spent_cents": old["total_cents"] + latest["total_cents"],
        "last_order_at": latest["created_at"],
        "orders_last_30_days": 2,
    }
    assert old["total_cents"] == 1525


async def test_a_repeat_is_served_from_the_cache_until_an_order_commits(
    client: BastionClient, runtime: Runtime
) -> None:
    ada = make_user(runtime, "ada@example.com")
    await _buy(client, runtime, ada, 1000)
    with client.acting_as(ada):
        first = await client.get(f"{API}/me/dashboard")
        hits = runtime.cache.hits
        with _orders_queries(runtime) as queries:
            second = await client.get(f"{API}/me/dashboard")
        assert queries == []
        assert runtime.cache.hits == hits + 1
        assert second.json() == first.json()

    placed = await _buy(client, runtime, ada, 2000)
    with client.acting_as(ada), _orders_queries(runtime) as queries:
        refreshed = (await client.get(f"{API}/me/dashboard")).json()
    assert len(queries) == 1
    assert refreshed["total_orders"] == 2
    assert refreshed["total_spent_cents"] == first.json()["total_spent_cents"] + 2525
    assert refreshed["last_order_at"] == placed["created_at"]


async def test_a_dashboard_never_shows_another_users_orders(
    client: BastionClient, runtime: Runtime
) -> None:
    ada, bob = make_user(runtime, "ada@example.com"), make_user(runtime, "bob@example.com")
    await _buy(client, runtime, ada, 1000)
    with client.acting_as(ada):
        assert (await client.get(f"{API}/me/dashboard")).json()["total_orders"] == 1
    with client.acting_as(bob):
        bobs = (await client.get(f"{API}/me/dashboard")).json()
    assert bobs == {
        "total_orders": 0,
        "total_spent_cents": 0,
        "last_order_at": None,
        "orders_last_30_days": 0,
    }
    assert problem(await client.get(f"{API}/me/dashboard")) == (401, "not_authenticated")
