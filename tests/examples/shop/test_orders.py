"""Orders for their buyer and admins, and admin refunds (shop-api.md, Checkout and orders;
Administration)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bastion import Principal, Runtime
from bastion.auth.audit import AuditEntry
from bastion.testing import BastionClient
from bastion.webhooks import WebhookDeliveryRow
from examples.shop.models import Order, OrderItem
from tests.examples.shop.conftest import ADMIN, USER
from tests.examples.shop.shoppers import (
    API,
    CARD,
    balance_of,
    fill_cart,
    grant_credits,
    jobs_named,
    make_product,
    make_user,
    problem,
    unrefunded,
)
from tests.jobs.conftest import run_until
from tests.support.gateway import PaymentGatewayProcess


@pytest.fixture
def bastion_settings_overrides(payment_gateway: PaymentGatewayProcess) -> dict[str, Any]:
    return {
        "shop": {"seed_demo_data": False, "gateway_url": payment_gateway.url},
        "jobs": {"poll_interval_s": 0.05},
    }


def _place(runtime: Runtime, user: Principal, count: int) -> list[int]:
    """``count`` paid orders of one item each, a minute apart; returns their ids."""
    product = make_product(runtime)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with runtime.database.transaction() as session:
        orders = [
            Order(
                user_id=int(user.id),
                status="paid",
                subtotal_cents=1000,
                shipping_cents=500,
                credits_applied_cents=0,
                total_cents=1500,
                charged_cents=1500,
                shipping_method="standard",
                shipping_estimated_days=3,
                shipping_provider="USPS",
                shipping_address={},
                payment_id=f"ch_{n}",
                workflow_id=f"wf-{user.id}-{n}",
                created_at=start + timedelta(minutes=n),
                items=[
                    OrderItem(
                        product_id=product,
                        name="Kettle",
                        unit_price_cents=1000,
                        quantity=1,
                        line_total_cents=1000,
                    )
                ],
            )
            for n in range(count)
        ]
        session.add_all(orders)
        session.flush()
        return [order.id for order in orders]


async def _checkout(client: BastionClient, runtime: Runtime, user: Principal, **body: Any) -> Any:
    fill_cart(runtime, user, {make_product(runtime, price_cents=2000, weight_grams=0): 1})
    with client.acting_as(user):
        response = await client.post(
            f"{API}/checkout", json={**CARD, **body}, headers={"Idempotency-Key": "k"}
        )
    assert response.status_code == 201, response.text
    return response.json()


async def test_a_user_lists_their_orders_newest_first_a_page_at_a_time(
    client: BastionClient, runtime: Runtime
) -> None:
    ada, bob = make_user(runtime, "ada@example.com"), make_user(runtime, "bob@example.com")
    ids = _place(runtime, ada, 5)
    _place(runtime, bob, 2)
    with client.acting_as(ada):
        first = (await client.get(f"{API}/orders?limit=2")).json()
        last = (await client.get(f"{API}/orders?limit=2&page=3")).json()
    assert [order["id"] for order in first["data"]] == [ids[4], ids[3]]
    assert first["pagination"] == {"page": 1, "limit": 2, "total": 5, "total_pages": 3}
    assert [order["id"] for order in last["data"]] == [ids[0]]
    assert first["data"][0]["items"][0]["name"] == "Kettle"


async def test_an_order_is_visible_to_its_buyer_and_admins_only(
    client: BastionClient, runtime: Runtime
) -> None:
    ada, bob = make_user(runtime, "ada@example.com"), make_user(runtime, "bob@example.com")
    [order] = _place(runtime, ada, 1)
    with client.acting_as(ada):
        mine = await client.get(f"{API}/orders/{order}")
    with client.acting_as(bob):
        theirs = await client.get(f"{API}/orders/{order}")
    with client.acting_as(ADMIN):
        admin = await client.get(f"{API}/orders/{order}")
    anonymous = await client.get(f"{API}/orders/{order}")
    assert mine.status_code == admin.status_code == 200
    assert mine.json() == admin.json()
    assert problem(theirs) == (404, "not_found")
    assert problem(anonymous) == (401, "not_authenticated")


async def test_a_refund_to_the_card_gives_back_the_charge_and_the_credits(
    client: BastionClient, runtime: Runtime, payment_gateway: PaymentGatewayProcess
) -> None:
    shopper = make_user(runtime, "ada@example.com")
    grant_credits(runtime, shopper, 800)
    order = await _checkout(client, runtime, shopper, use_credits=True)
    with client.acting_as(ADMIN):
        hook = {
            "url": "https://crm.example.com/hooks",
            "events": ["order.refunded"],
            "reason": "crm",
        }
        await client.post(f"{API}/admin/webhooks", json=hook)
        refunded = await client.post(
            f"{API}/admin/orders/{order['id']}/refund",
            json={"reason": "arrived broken", "to": "card"},
        )
        again = await client.post(
            f"{API}/admin/orders/{order['id']}/refund", json={"reason": "again", "to": "credits"}
        )

    assert refunded.status_code == 200, refunded.text
    assert refunded.json() == {**order, "status": "refunded"}
    assert problem(again) == (409, "already_refunded")
    assert balance_of(runtime, shopper) == 800
    [job] = jobs_named(runtime, "refund_order_payment")
    await run_until(runtime, lambda: runtime.jobs.store.get(job.id).status == "succeeded")  # type: ignore[union-attr]
    assert unrefunded(payment_gateway.charges()) == []
    with runtime.database.read_transaction() as session:
        entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "order.refund"))
        assert entry is not None
        assert (entry.actor_id, entry.target_id, entry.reason) == (
            ADMIN.id,
            str(order["id"]),
            "arrived broken",
        )
        assert entry.data["to"] == "card"
        [delivery] = session.scalars(select(WebhookDeliveryRow))
        assert delivery.event_type == "order.refunded"


async def test_a_refund_to_credits_credits_the_whole_total(
    client: BastionClient, runtime: Runtime, payment_gateway: PaymentGatewayProcess
) -> None:
    shopper = make_user(runtime, "ada@example.com")
    order = await _checkout(client, runtime, shopper)
    with client.acting_as(ADMIN):
        refunded = await client.post(
            f"{API}/admin/orders/{order['id']}/refund", json={"reason": "goodwill", "to": "credits"}
        )
    assert refunded.json()["status"] == "refunded"
    assert balance_of(runtime, shopper) == order["total_cents"]
    assert jobs_named(runtime, "refund_order_payment") == []
    assert len(unrefunded(payment_gateway.charges())) == 1
    with client.acting_as(shopper):
        credits = (await client.get(f"{API}/me/credits")).json()
    assert credits["entries"]["data"][0]["reason"] == f"refund of order {order['id']}"


@pytest.mark.parametrize(
    ("who", "body", "expected"),
    [
        (USER, {"reason": "please", "to": "card"}, (403, "permission_denied")),
        (None, {"reason": "please", "to": "card"}, (401, "not_authenticated")),
        (ADMIN, {"reason": "no", "to": "card"}, (422, "validation_failed")),
        (ADMIN, {"reason": "because", "to": "cash"}, (422, "validation_failed")),
    ],
)
async def test_refunds_are_for_admins_with_a_reason(
    client: BastionClient,
    runtime: Runtime,
    who: Principal | None,
    body: dict[str, str],
    expected: tuple[int, str],
) -> None:
    [order] = _place(runtime, make_user(runtime, "ada@example.com"), 1)
    with client.acting_as(who):
        response = await client.post(f"{API}/admin/orders/{order}/refund", json=body)
    assert problem(response) == expected
    with runtime.database.read_transaction() as session:
        placed = session.get(Order, order)
        assert placed is not None
        assert placed.status == "paid"


async def test_refunding_an_unknown_order_is_404(client: BastionClient) -> None:
    with client.acting_as(ADMIN):
        response = await client.post(
            f"{API}/admin/orders/999/refund", json={"reason": "because", "to": "card"}
        )
    assert problem(response) == (404, "not_found")
