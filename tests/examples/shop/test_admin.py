"""The shop's administration beyond refunds (shop-api.md, Administration): every buyer's
orders for admins, the platform's operations API, and client log capture."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bastion import Principal, Runtime
from bastion.monitoring import ClientLogRow
from bastion.testing import BastionClient, job_is, run_worker_until
from examples.shop.models import Order
from tests.examples.shop.conftest import ADMIN, USER
from tests.examples.shop.shoppers import API, make_user, problem


@pytest.fixture
def bastion_settings_overrides() -> dict[str, Any]:
    return {"shop": {"seed_demo_data": False}, "jobs": {"poll_interval_s": 0.05}}


def _orders(runtime: Runtime, user: Principal, statuses: list[str]) -> list[int]:
    """Orders of ``user`` with ``statuses``, a minute apart; returns their ids."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with runtime.database.transaction() as session:
        orders = [
            Order(
                user_id=int(user.id),
                status=status,
                subtotal_cents=1000,
                shipping_cents=500,
                credits_applied_cents=0,
                total_cents=1500,
                charged_cents=1500,
                shipping_method="standard",
                shipping_estimated_days=3,
                shipping_provider="USPS",
                shipping_address={},
                payment_id=f"ch_{user.id}_{n}",
                workflow_id=f"wf-{user.id}-{n}",
                created_at=start + timedelta(minutes=n),
                refunded_at=start + timedelta(days=1) if status == "refunded" else None,
                refunded_to="credits" if status == "refunded" else None,
            )
            for n, status in enumerate(statuses)
        ]
        session.add_all(orders)
        session.flush()
        return [order.id for order in orders]


async def test_an_admin_lists_every_buyers_orders_by_status_and_buyer(
    client: BastionClient, runtime: Runtime
) -> None:
    ada, bob = make_user(runtime, "ada@example.com"), make_user(runtime, "bob@example.com")
    ada_orders = _orders(runtime, ada, ["paid", "refunded", "paid"])
    bob_orders = _orders(runtime, bob, ["paid"])
    with client.acting_as(ADMIN):
        every = (await client.get(f"{API}/admin/orders")).json()
        refunded = (await client.get(f"{API}/admin/orders", params={"status": "refunded"})).json()
        adas = await client.get(f"{API}/admin/orders", params={"user_id": ada.id, "limit": 2})
        bad = await client.get(f"{API}/admin/orders", params={"status": "lost"})
    assert {order["id"] for order in every["data"]} == {*ada_orders, *bob_orders}
    assert every["pagination"]["total"] == 4
    [shown] = refunded["data"]
    assert (shown["id"], shown["user_id"], shown["status"], shown["refunded_to"]) == (
        ada_orders[1],
        int(ada.id),
        "refunded",
        "credits",
    )
    assert shown["total_cents"] == 1500
    assert [order["id"] for order in adas.json()["data"]] == [ada_orders[2], ada_orders[1]]
    assert adas.json()["pagination"] == {"page": 1, "limit": 2, "total": 3, "total_pages": 2}
    assert problem(bad) == (422, "validation_failed")


async def test_only_admins_list_orders_and_use_the_operations_api(client: BastionClient) -> None:
    for path in ("/admin/orders", "/admin/errors", "/admin/jobs", "/admin/users"):
        assert problem(await client.get(API + path)) == (401, "not_authenticated")
        with client.acting_as(USER):
            assert problem(await client.get(API + path)) == (403, "permission_denied")
        with client.acting_as(ADMIN):
            assert (await client.get(API + path)).status_code == 200


async def test_the_shop_takes_client_logs_and_a_job_stores_them(
    client: BastionClient, runtime: Runtime
) -> None:
    batch = {"entries": [{"level": "error", "message": "checkout button broke", "area": "cart"}]}
    response = await client.post(f"{API}/client-logs", json=batch)
    assert response.status_code == 202
    worker = runtime.jobs.worker(["bastion"])
    [job] = [j for j in runtime.jobs.store.list(queue="bastion") if j.name.endswith("ingest")]
    await run_worker_until(runtime, job_is(runtime, job.id, "succeeded"), worker=worker)
    with runtime.database.read_transaction() as session:
        [row] = session.scalars(select(ClientLogRow))
        assert (row.message, row.area, row.request_id) == (
            "checkout button broke",
            "cart",
            response.headers["x-request-id"],
        )
