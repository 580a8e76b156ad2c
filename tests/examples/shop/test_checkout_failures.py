"""Checkout when the gateway fails: 503 and 504 as the contract says, the circuit
breaker failing fast and closing again, and no money left without an order or a
reconciliation that settles it."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from bastion import Runtime
from bastion.testing import BastionClient
from examples.shop import payments
from examples.shop.models import Product
from tests.examples.shop.shoppers import (
    API,
    CARD,
    cart_lines,
    fill_cart,
    make_product,
    make_user,
    orders_of,
    problem,
    reconciliations,
    stock_of,
    unrefunded,
)
from tests.jobs.conftest import eventually, run_until
from tests.support.gateway import PaymentGatewayProcess

TIMEOUT_S = 0.3
ATTEMPTS = 3
#: The breaker's open period.
RESET_S = 1.0


@pytest.fixture
def bastion_settings_overrides(payment_gateway: PaymentGatewayProcess) -> dict[str, Any]:
    return {
        "shop": {
            "seed_demo_data": False,
            "gateway_url": payment_gateway.url,
            "payment_retry_after_s": 7,
            "reconcile_retry_s": 0.05,
        },
        "integrations": {
            "timeout_s": TIMEOUT_S,
            "max_attempts": ATTEMPTS,
            "backoff_base_s": 0.01,
            "backoff_max_s": 0.05,
            "breaker_failure_threshold": 3,
            "breaker_reset_timeout_s": RESET_S,
        },
        "jobs": {"poll_interval_s": 0.05},
    }


def _calls(gateway: PaymentGatewayProcess, line: str) -> int:
    """Requests so far that the gateway logged as ``line`` (its log spans the session)."""
    return gateway.log().count(line)


async def _logged(gateway: PaymentGatewayProcess, line: str, count: int) -> None:
    """Wait until the gateway has logged ``line`` ``count`` times: it logs a request
    just after answering it."""
    await eventually(lambda: _calls(gateway, line) >= count)


def _settled(runtime: Runtime) -> bool:
    return all(record.resolved_at is not None for record in reconciliations(runtime))


async def _checkout(client: BastionClient, key: str = "key-1") -> Any:
    return await client.post(f"{API}/checkout", json=CARD, headers={"Idempotency-Key": key})


async def test_a_failing_gateway_is_503_with_retry_after_and_the_attempt_is_settled(
    client: BastionClient, runtime: Runtime, payment_gateway: PaymentGatewayProcess
) -> None:
    shopper = make_user(runtime, "ada@example.com")
    product = make_product(runtime)
    fill_cart(runtime, shopper, {product: 1})
    payment_gateway.control("fail_500")
    before = _calls(payment_gateway, "POST /charges 500")
    with client.acting_as(shopper), capture_logs() as logs:
        response = await _checkout(client)

    assert problem(response) == (503, "payment_unavailable")
    assert response.headers["retry-after"] == "7"
    await _logged(payment_gateway, "POST /charges 500", before + ATTEMPTS)
    await anyio.sleep(0.05)
    assert _calls(payment_gateway, "POST /charges 500") - before == ATTEMPTS
    assert orders_of(runtime, shopper) == []
    assert (stock_of(runtime, product), cart_lines(runtime, shopper)) == (10, {product: 1})
    # The 500s may have come after a charge: the attempt is recorded, and alerted.
    [record] = reconciliations(runtime)
    assert (record.reason, record.resolved_at) == ("charge_unanswered", None)
    assert [
        e["reconciliation_id"] for e in logs if e["event"] == "payment_reconciliation_needed"
    ] == [record.id]

    payment_gateway.control("ok")
    await run_until(runtime, lambda: _settled(runtime))
    # Repeating the charge under its key is the only way to learn what happened: here
    # nothing had been charged, so the repeat charged and the refund gave it back.
    assert unrefunded(payment_gateway.charges()) == []


async def test_the_breaker_fails_fast_then_a_trial_closes_it(
    client: BastionClient, runtime: Runtime, payment_gateway: PaymentGatewayProcess
) -> None:
    shopper = make_user(runtime, "ada@example.com")
    fill_cart(runtime, shopper, {make_product(runtime): 1})
    payment_gateway.control("fail_500")
    before = _calls(payment_gateway, "POST /charges")
    with client.acting_as(shopper):
        # Three failures open the breaker; the next checkout is refused before any call.
        assert problem(await _checkout(client, "k1")) == (503, "payment_unavailable")
        refused = await _checkout(client, "k2")
        assert problem(refused) == (503, "payment_unavailable")
        assert int(refused.headers["retry-after"]) >= 1
        await _logged(payment_gateway, "POST /charges", before + ATTEMPTS)
        await anyio.sleep(0.05)
        assert _calls(payment_gateway, "POST /charges") == before + ATTEMPTS, "k2 called nobody"
        # Refused before any request went out: nothing to reconcile for this one.
        assert len(reconciliations(runtime)) == 1

        payment_gateway.control("ok")
        await anyio.sleep(RESET_S)
        placed = await _checkout(client, "k3")
    assert placed.status_code == 201, placed.text
    assert [c["id"] for c in payment_gateway.charges()] == [placed.json()["payment_id"]]
    snapshot = await runtime.http.breaker.snapshot(payments.DEPENDENCY)
    assert snapshot.state == "closed"


async def test_a_hanging_gateway_is_504_without_waiting_for_it(
    client: BastionClient, runtime: Runtime, payment_gateway: PaymentGatewayProcess
) -> None:
    shopper = make_user(runtime, "ada@example.com")
    product = make_product(runtime)
    fill_cart(runtime, shopper, {product: 1})
    payment_gateway.control("timeout", delay_s=5)
    with client.acting_as(shopper):
        started = time.monotonic()
        response = await _checkout(client)
        elapsed = time.monotonic() - started
    assert problem(response) == (504, "upstream_timeout")
    # Every attempt is cut at the time limit: the gateway would have held each for 5 s.
    assert elapsed < ATTEMPTS * TIMEOUT_S + 1.0
    assert orders_of(runtime, shopper) == []
    assert stock_of(runtime, product) == 10
    assert [r.reason for r in reconciliations(runtime)] == ["charge_unanswered"]


async def test_a_charge_whose_answer_was_lost_is_recovered_by_the_retries(
    client: BastionClient, runtime: Runtime, payment_gateway: PaymentGatewayProcess
) -> None:
    shopper = make_user(runtime, "ada@example.com")
    fill_cart(runtime, shopper, {make_product(runtime): 1})
    # 500 before charging, then 500 after charging: the third attempt replays the charge.
    payment_gateway.control("flaky", failures=2)
    with client.acting_as(shopper):
        response = await _checkout(client)
    assert response.status_code == 201, response.text
    [charge] = payment_gateway.charges()
    assert charge["id"] == response.json()["payment_id"]
    assert reconciliations(runtime) == []


async def test_a_client_retry_after_a_lost_charge_pays_once_in_the_end(
    client: BastionClient, runtime: Runtime, payment_gateway: PaymentGatewayProcess
) -> None:
    shopper = make_user(runtime, "ada@example.com")
    fill_cart(runtime, shopper, {make_product(runtime): 1})
    # Before, after charging, before: every attempt of the first request fails, one of
    # them after taking the money.
    payment_gateway.control("flaky", failures=3)
    with client.acting_as(shopper):
        first = await _checkout(client)
        assert problem(first) == (503, "payment_unavailable")
        await anyio.sleep(RESET_S)
        retried = await _checkout(client)
    assert retried.status_code == 201, retried.text
    assert len(payment_gateway.charges()) == 2

    await run_until(runtime, lambda: _settled(runtime))
    [kept] = unrefunded(payment_gateway.charges())
    assert kept["id"] == retried.json()["payment_id"]
    [record] = reconciliations(runtime)
    assert record.resolution == f"charge {record.charge_id} refunded"
    assert record.charge_id != kept["id"]


async def test_a_refund_that_fails_becomes_a_reconciliation_that_refunds_later(
    client: BastionClient,
    runtime: Runtime,
    payment_gateway: PaymentGatewayProcess,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shopper = make_user(runtime, "ada@example.com")
    product = make_product(runtime, stock=1)
    fill_cart(runtime, shopper, {product: 1})
    charge = payments.create_charge

    async def charge_then_break(*args: Any, **kwargs: Any) -> payments.Charge:
        # The stock goes while the card is charged, and the gateway fails right after:
        # the order cannot be recorded and the charge cannot be refunded now.
        made = await charge(*args, **kwargs)
        with runtime.database.transaction() as session:
            row = session.get(Product, product)
            assert row is not None
            row.stock = 0
        payment_gateway.control("fail_500")
        return made

    monkeypatch.setattr(payments, "create_charge", charge_then_break)
    with client.acting_as(shopper), capture_logs() as logs:
        response = await _checkout(client)

    assert problem(response) == (409, "insufficient_inventory")
    [charged] = payment_gateway.charges()
    [record] = reconciliations(runtime)
    assert (record.reason, record.charge_id, record.amount_cents) == (
        "refund_failed",
        charged["id"],
        charged["amount_cents"],
    )
    assert any(e["event"] == "payment_reconciliation_needed" for e in logs)
    assert orders_of(runtime, shopper) == []

    payment_gateway.control("ok")
    await run_until(runtime, lambda: _settled(runtime))
    assert unrefunded(payment_gateway.charges()) == []
