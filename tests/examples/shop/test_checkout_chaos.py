"""Chaos acceptance: 50 checkouts at once against a gateway that keeps failing, before
and after charging. Clients retry as real ones do (same Idempotency-Key, honouring
Retry-After); a worker settles reconciliations meanwhile. In the end every checkout
has exactly one paid order holding exactly one unrefunded charge, or neither, and the
money at the gateway is exactly the money the orders say was charged."""

from __future__ import annotations

import random
from typing import Any

import anyio
import pytest

from bastion import Principal, Runtime
from tests.examples.shop.shoppers import (
    API,
    CARD,
    client_of,
    fill_cart,
    make_product,
    make_user,
    orders_of,
    reconciliations,
    stock_of,
    unrefunded,
)
from tests.jobs.conftest import eventually
from tests.support.gateway import PaymentGatewayProcess

CHECKOUTS = 50
MAX_TRIES = 40
#: After each call, the gateway's next two calls fail with this probability...
FAILURE_CHANCE = 0.2
#: ...until it has failed this many in all (so that the run ends).
FAILURES = 50
#: The opening burst's first calls fail: more in a row than open the circuit breaker.
OPENING_FAILURES = 8


@pytest.fixture
def bastion_settings_overrides(payment_gateway: PaymentGatewayProcess) -> dict[str, Any]:
    return {
        "shop": {
            "seed_demo_data": False,
            "gateway_url": payment_gateway.url,
            "payment_retry_after_s": 1,
            "reconcile_retry_s": 0.3,
            "reconcile_max_attempts": 1000,
        },
        "integrations": {
            # Two attempts per call: the failures get through to the clients.
            "max_attempts": 2,
            "backoff_base_s": 0.01,
            "backoff_max_s": 0.05,
            "breaker_reset_timeout_s": 0.2,
        },
        "jobs": {"poll_interval_s": 0.05},
    }


async def _buy(runtime: Runtime, user: Principal, key: str) -> list[int]:
    """Check out until it succeeds, like a client: the same key on every try, waiting
    as ``Retry-After`` says after a 5xx or a 409 ``idempotency_in_progress``."""
    statuses: list[int] = []
    async with client_of(runtime, user) as http:
        for _ in range(MAX_TRIES):
            response = await http.post(
                f"{API}/checkout", json=CARD, headers={"Idempotency-Key": key}
            )
            statuses.append(response.status_code)
            retry = response.status_code >= 500 or (
                response.status_code == 409 and response.json()["code"] == "idempotency_in_progress"
            )
            if not retry:
                return statuses
            await anyio.sleep(float(response.headers.get("retry-after", "1")))
    return statuses


async def test_fifty_checkouts_through_a_flaky_gateway_never_lose_money(
    runtime: Runtime, payment_gateway: PaymentGatewayProcess
) -> None:
    product = make_product(runtime, price_cents=1999, stock=1000)
    users = [make_user(runtime, f"chaos{i}@example.com") for i in range(CHECKOUTS)]
    for user in users:
        fill_cart(runtime, user, {product: 1})
    outcomes: dict[int, list[int]] = {}

    async def buy(index: int) -> None:
        outcomes[index] = await _buy(runtime, users[index], f"chaos-{index}")

    def calls() -> int:
        return payment_gateway.log().count("POST /charges")

    async def break_the_gateway() -> None:
        # For each call, a pair of failures with FAILURE_CHANCE: the gateway's flaky mode
        # fails the next calls, the 1st before the charge, the 2nd after it, and so on.
        # Armed after the calls that drew them, so paced by the traffic, not the clock:
        # spread over the whole run, its slow end included. The opening burst comes
        # faster than anyone can watch, so its failures are armed up front.
        chance = random.Random(CHECKOUTS)

        def draw(new_calls: int) -> int:
            return 2 * sum(chance.random() < FAILURE_CHANCE for _ in range(new_calls))

        armed = OPENING_FAILURES
        await anyio.to_thread.run_sync(payment_gateway.control, "flaky", armed)
        seen = calls()
        while armed < FAILURES:
            await anyio.sleep(0.01)
            now = calls()
            failures = min(draw(now - seen), FAILURES - armed)
            if failures:
                await anyio.to_thread.run_sync(payment_gateway.control, "flaky", failures)
                armed += failures
            seen = now

    worker = runtime.jobs.worker()
    async with anyio.create_task_group() as group:
        await group.start(worker.run)
        with anyio.fail_after(40):
            async with anyio.create_task_group() as chaos:
                chaos.start_soon(break_the_gateway)
                async with anyio.create_task_group() as buyers:
                    for index in range(CHECKOUTS):
                        buyers.start_soon(buy, index)
                chaos.cancel_scope.cancel()
            await anyio.to_thread.run_sync(payment_gateway.control, "ok")
            await eventually(
                lambda: all(r.resolved_at is not None for r in reconciliations(runtime)),
                limit_s=30,
            )
        worker.stop()

    failures = sum(status >= 500 for statuses in outcomes.values() for status in statuses)
    assert failures > 0, "the gateway's failures reached some checkouts"
    assert all(statuses[-1] == 201 for statuses in outcomes.values()), outcomes
    charges = payment_gateway.charges()
    held = {charge["id"]: charge for charge in unrefunded(charges)}
    placed = [order for user in users for order in orders_of(runtime, user)]
    for user in users:
        orders = orders_of(runtime, user)
        assert len(orders) <= 1
        if orders:
            [order] = orders
            assert order.status == "paid"
            assert held[order.payment_id or ""]["amount_cents"] == order.charged_cents
    assert sorted(held) == sorted(order.payment_id or "" for order in placed)
    assert sum(c["amount_cents"] - c["refunded_cents"] for c in charges) == sum(
        order.charged_cents for order in placed
    )
    assert stock_of(runtime, product) == 1000 - len(placed)
