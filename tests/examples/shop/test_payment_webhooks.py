"""The gateway's signed webhooks at ``POST /api/v1/webhooks/payments`` (shop-api.md,
Payment gateway): signatures checked, each event handled once by a job that confirms
the order or, for a charge no order holds, opens a reconciliation."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from bastion import Runtime
from bastion.testing import BastionClient, RuntimeFactory, live_server
from examples.shop.gateway.signing import sign
from tests.examples.shop.shoppers import (
    API,
    CARD,
    fill_cart,
    jobs_named,
    make_product,
    make_user,
    orders_of,
    problem,
    reconciliations,
)
from tests.jobs.conftest import eventually, run_until
from tests.support.gateway import TEST_WEBHOOK_SECRET, PaymentGatewayProcess

HOOK = f"{API}/webhooks/payments"
HANDLER = "on_payment_event"


@pytest.fixture
def bastion_settings_overrides(payment_gateway: PaymentGatewayProcess) -> dict[str, Any]:
    return {
        "shop": {
            "seed_demo_data": False,
            "gateway_url": payment_gateway.url,
            "gateway_webhook_secret": TEST_WEBHOOK_SECRET,
            "webhook_grace_s": 0,
        },
        "jobs": {"poll_interval_s": 0.05},
    }


def _event(charge: dict[str, Any], kind: str = "charge.succeeded", **fields: Any) -> bytes:
    event = {"id": "evt_1", "type": kind, "created": int(time.time()), "data": charge, **fields}
    return json.dumps(event).encode()


async def _deliver(
    client: BastionClient, body: bytes, *, secret: str = TEST_WEBHOOK_SECRET, age_s: int = 0
) -> httpx.Response:
    signature = sign(secret, body, int(time.time()) - age_s)
    return await client.post(HOOK, content=body, headers={"Gateway-Signature": signature})


async def _charge(gateway: PaymentGatewayProcess, amount_cents: int = 1500) -> dict[str, Any]:
    """A charge made at the gateway behind the shop's back (no order holds it)."""
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        response = await http.post(
            "/charges",
            json={"amount_cents": amount_cents, "currency": "usd", "token": "tok_visa"},
            headers={"Idempotency-Key": f"outside-{time.monotonic_ns()}"},
        )
    response.raise_for_status()
    return dict(response.json())


async def _refund(gateway: PaymentGatewayProcess, charge_id: str) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        (await http.post(f"/charges/{charge_id}/refunds")).raise_for_status()


def _handled(runtime: Runtime) -> bool:
    return all(job.status == "succeeded" for job in jobs_named(runtime, HANDLER))


async def test_a_signed_event_confirms_the_order_once(
    client: BastionClient, runtime: Runtime, payment_gateway: PaymentGatewayProcess
) -> None:
    shopper = make_user(runtime, "ada@example.com")
    fill_cart(runtime, shopper, {make_product(runtime): 1})
    with client.acting_as(shopper):
        order = (
            await client.post(f"{API}/checkout", json=CARD, headers={"Idempotency-Key": "k"})
        ).json()
    [charge] = payment_gateway.charges()
    body = _event(charge)

    first = await _deliver(client, body)
    again = await _deliver(client, body)

    assert (first.status_code, first.json()) == (200, {"received": True, "duplicate": False})
    assert again.json() == {"received": True, "duplicate": True}
    [job] = jobs_named(runtime, HANDLER)
    await run_until(runtime, lambda: _handled(runtime))
    assert runtime.jobs.store.get(job.id).result == "confirmed"  # type: ignore[union-attr]
    [placed] = orders_of(runtime, shopper)
    assert placed.id == order["id"]
    assert placed.payment_confirmed_at is not None


@pytest.mark.parametrize(
    ("secret", "age_s", "header"),
    [
        ("whsec_someone_else", 0, True),
        (TEST_WEBHOOK_SECRET, 301, True),  # stale: older than 300 s
        (TEST_WEBHOOK_SECRET, -301, True),  # from the future
        (TEST_WEBHOOK_SECRET, 0, False),  # unsigned
    ],
)
async def test_a_bad_signature_is_400_and_nothing_is_handled(
    client: BastionClient, runtime: Runtime, secret: str, age_s: int, header: bool
) -> None:
    body = _event({"id": "ch_1", "amount_cents": 100})
    if header:
        response = await _deliver(client, body, secret=secret, age_s=age_s)
    else:
        response = await client.post(HOOK, content=body)
    assert problem(response) == (400, "invalid_signature")
    assert jobs_named(runtime, HANDLER) == []


async def test_a_tampered_body_is_400(client: BastionClient) -> None:
    body = _event({"id": "ch_1", "amount_cents": 100})
    signature = sign(TEST_WEBHOOK_SECRET, body, int(time.time()))
    tampered = body.replace(b"100", b"999")
    response = await client.post(HOOK, content=tampered, headers={"Gateway-Signature": signature})
    assert problem(response) == (400, "invalid_signature")


async def test_a_charge_no_order_holds_becomes_a_reconciliation(
    client: BastionClient, runtime: Runtime, payment_gateway: PaymentGatewayProcess
) -> None:
    stray = await _charge(payment_gateway, 4200)
    assert (await _deliver(client, _event(stray))).status_code == 200
    await run_until(runtime, lambda: _handled(runtime))
    [record] = reconciliations(runtime)
    assert (record.reason, record.charge_id, record.amount_cents, record.resolved_at) == (
        "charge_without_order",
        stray["id"],
        4200,
        None,
    )

    # The gateway reports the refund someone made: the reconciliation is settled.
    await _refund(payment_gateway, stray["id"])
    [refunded] = payment_gateway.charges()
    response = await _deliver(client, _event(refunded, "charge.refunded", id="evt_2"))
    assert response.status_code == 200
    await run_until(runtime, lambda: _handled(runtime))
    [record] = reconciliations(runtime)
    assert record.resolved_at is not None


async def test_a_charge_refunded_since_needs_no_reconciliation(
    client: BastionClient, runtime: Runtime, payment_gateway: PaymentGatewayProcess
) -> None:
    stray = await _charge(payment_gateway)
    await _refund(payment_gateway, stray["id"])
    assert (await _deliver(client, _event(stray))).status_code == 200
    await run_until(runtime, lambda: _handled(runtime))
    assert reconciliations(runtime) == []


async def test_the_gateway_process_confirms_a_checkout_over_the_network(
    make_runtime: RuntimeFactory,
) -> None:
    # The gateway must know the shop's address and the shop the gateway's: the gateway's
    # port is chosen before it starts, the shop's when it is served.
    gateway = PaymentGatewayProcess(webhook_secret=TEST_WEBHOOK_SECRET)
    runtime = make_runtime(
        shop={"gateway_url": gateway.url, "webhook_grace_s": 0.2},
        jobs={"embedded_worker": True},
    )
    with live_server(runtime.asgi()) as shop_url:
        gateway.webhook_url = f"{shop_url}{HOOK}"
        gateway.start()
        try:
            shopper = make_user(runtime, "ada@example.com")
            fill_cart(runtime, shopper, {make_product(runtime): 1})
            async with BastionClient(runtime.asgi()) as client:
                with client.acting_as(shopper):
                    response = await client.post(
                        f"{API}/checkout", json=CARD, headers={"Idempotency-Key": "net"}
                    )
            assert response.status_code == 201, response.text
            await eventually(
                lambda: orders_of(runtime, shopper)[0].payment_confirmed_at is not None
            )
        finally:
            gateway.stop()
