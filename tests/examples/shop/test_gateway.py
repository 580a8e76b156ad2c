"""The shop's payment gateway, as a real process, against shop-api.md ("Payment gateway")."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bastion.testing.client import live_server
from examples.shop.gateway.app import WEBHOOK_RETRY_DELAYS_S
from examples.shop.gateway.signing import sign, verify
from tests.support.gateway import TEST_WEBHOOK_SECRET, PaymentGatewayProcess, StartPaymentGateway

CHARGE = {"amount_cents": 1500, "currency": "usd", "token": "tok_visa"}


def _charge(
    gateway: PaymentGatewayProcess,
    key: str | None = "key-1",
    body: Any = CHARGE,
    *,
    timeout: float = 5.0,
) -> httpx.Response:
    headers = {} if key is None else {"Idempotency-Key": key}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{gateway.url}/charges", content=content, headers=headers, timeout=timeout)


def _refund(
    gateway: PaymentGatewayProcess, charge_id: str, body: Any = None, key: str | None = None
) -> httpx.Response:
    headers = {} if key is None else {"Idempotency-Key": key}
    content = b"" if body is None else json.dumps(body).encode()
    return httpx.post(
        f"{gateway.url}/charges/{charge_id}/refunds", content=content, headers=headers
    )


def _wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


# -- charges ------------------------------------------------------------------------------


def test_a_charge_succeeds_and_is_listed(payment_gateway: PaymentGatewayProcess) -> None:
    response = _charge(payment_gateway)

    assert response.status_code == 201
    charge = response.json()
    assert charge["id"].startswith("ch_")
    assert charge["status"] == "succeeded"
    assert (charge["amount_cents"], charge["currency"]) == (1500, "usd")
    assert payment_gateway.charges() == [charge]
    fetched = httpx.get(f"{payment_gateway.url}/charges/{charge['id']}")
    assert fetched.status_code == 200
    assert fetched.json()["refunded_cents"] == 0
    _wait_until(lambda: "POST /charges 201" in payment_gateway.log())


def test_an_unknown_charge_is_404(payment_gateway: PaymentGatewayProcess) -> None:
    response = httpx.get(f"{payment_gateway.url}/charges/ch_nope")

    assert (response.status_code, response.json()) == (404, {"error": "charge_not_found"})


def test_the_declined_token_is_declined_every_time(payment_gateway: PaymentGatewayProcess) -> None:
    declined = {**CHARGE, "token": "tok_declined"}

    first = _charge(payment_gateway, "key-d", declined)
    repeat = _charge(payment_gateway, "key-d", declined)

    assert (first.status_code, first.json()) == (402, {"error": "card_declined"})
    assert (repeat.status_code, repeat.json()) == (402, {"error": "card_declined"})
    assert payment_gateway.charges() == []


def test_a_repeated_key_returns_the_first_charge(payment_gateway: PaymentGatewayProcess) -> None:
    first = _charge(payment_gateway)
    repeat = _charge(payment_gateway)

    assert repeat.status_code == 201
    assert repeat.json() == first.json()
    assert len(payment_gateway.charges()) == 1


async def test_concurrent_duplicates_charge_once(payment_gateway: PaymentGatewayProcess) -> None:
    async with httpx.AsyncClient(base_url=payment_gateway.url) as client:
        responses = await asyncio.gather(
            *(
                client.post("/charges", json=CHARGE, headers={"Idempotency-Key": "same"})
                for _ in range(5)
            )
        )

    assert {response.status_code for response in responses} == {201}
    assert len({response.json()["id"] for response in responses}) == 1
    assert len(payment_gateway.charges()) == 1


def test_a_key_reused_with_another_body_is_422(payment_gateway: PaymentGatewayProcess) -> None:
    _charge(payment_gateway)

    response = _charge(payment_gateway, body={**CHARGE, "amount_cents": 1600})

    assert (response.status_code, response.json()) == (422, {"error": "idempotency_key_reused"})
    assert len(payment_gateway.charges()) == 1


def test_a_charge_needs_an_idempotency_key(payment_gateway: PaymentGatewayProcess) -> None:
    response = _charge(payment_gateway, key=None)

    assert (response.status_code, response.json()) == (400, {"error": "idempotency_key_required"})
    assert payment_gateway.charges() == []


@pytest.mark.parametrize(
    "body",
    [
        {**CHARGE, "amount_cents": 0},
        {**CHARGE, "amount_cents": -5},
        {**CHARGE, "amount_cents": 12.5},
        {**CHARGE, "amount_cents": "1500"},
        {**CHARGE, "amount_cents": True},
        {"currency": "usd", "token": "tok_visa"},
        {"amount_cents": 1500, "token": "tok_visa"},
        {"amount_cents": 1500, "currency": "usd"},
        {**CHARGE, "token": ""},
        [CHARGE],
        b"{not json",
    ],
)
def test_a_bad_charge_body_is_422(payment_gateway: PaymentGatewayProcess, body: Any) -> None:
    response = _charge(payment_gateway, body=body)

    assert (response.status_code, response.json()) == (422, {"error": "invalid_request"})
    assert payment_gateway.charges() == []


# -- refunds ------------------------------------------------------------------------------


def test_a_refund_defaults_to_the_full_amount(payment_gateway: PaymentGatewayProcess) -> None:
    charge = _charge(payment_gateway).json()

    response = _refund(payment_gateway, charge["id"])

    assert response.status_code == 201
    refund = response.json()
    assert refund["id"].startswith("re_")
    assert (refund["charge_id"], refund["amount_cents"], refund["status"]) == (
        charge["id"],
        1500,
        "succeeded",
    )
    [listed] = payment_gateway.charges()
    assert (listed["refunded_cents"], listed["refunds"]) == (1500, [refund])
    again = _refund(payment_gateway, charge["id"])
    assert (again.status_code, again.json()) == (422, {"error": "refund_exceeds_charge"})


def test_partial_refunds_add_up_to_the_charge(payment_gateway: PaymentGatewayProcess) -> None:
    charge_id = _charge(payment_gateway).json()["id"]

    assert _refund(payment_gateway, charge_id, {"amount_cents": 500}).status_code == 201
    assert _refund(payment_gateway, charge_id, {"amount_cents": 1000}).status_code == 201
    over = _refund(payment_gateway, charge_id, {"amount_cents": 1})

    assert (over.status_code, over.json()) == (422, {"error": "refund_exceeds_charge"})
    fetched = httpx.get(f"{payment_gateway.url}/charges/{charge_id}").json()
    assert fetched["refunded_cents"] == 1500
    assert [refund["amount_cents"] for refund in fetched["refunds"]] == [500, 1000]


def test_refunding_more_than_the_charge_is_422(payment_gateway: PaymentGatewayProcess) -> None:
    charge_id = _charge(payment_gateway).json()["id"]

    response = _refund(payment_gateway, charge_id, {"amount_cents": 1501})

    assert (response.status_code, response.json()) == (422, {"error": "refund_exceeds_charge"})
    assert payment_gateway.charges()[0]["refunded_cents"] == 0


def test_refunding_an_unknown_charge_is_404(payment_gateway: PaymentGatewayProcess) -> None:
    response = _refund(payment_gateway, "ch_nope")

    assert (response.status_code, response.json()) == (404, {"error": "charge_not_found"})


@pytest.mark.parametrize("amount", [0, -1, "500", 2.5])
def test_a_bad_refund_amount_is_422(payment_gateway: PaymentGatewayProcess, amount: Any) -> None:
    charge_id = _charge(payment_gateway).json()["id"]

    response = _refund(payment_gateway, charge_id, {"amount_cents": amount})

    assert (response.status_code, response.json()) == (422, {"error": "invalid_request"})


def test_a_keyed_refund_happens_once(payment_gateway: PaymentGatewayProcess) -> None:
    charge_id = _charge(payment_gateway).json()["id"]

    first = _refund(payment_gateway, charge_id, {"amount_cents": 500}, key="refund-1")
    repeat = _refund(payment_gateway, charge_id, {"amount_cents": 500}, key="refund-1")
    reused = _refund(payment_gateway, charge_id, {"amount_cents": 600}, key="refund-1")

    assert (repeat.status_code, repeat.json()) == (201, first.json())
    assert (reused.status_code, reused.json()) == (422, {"error": "idempotency_key_reused"})
    assert payment_gateway.charges()[0]["refunded_cents"] == 500


# -- failure modes ------------------------------------------------------------------------


def test_fail_500_fails_every_call_and_charges_nothing(
    payment_gateway: PaymentGatewayProcess,
) -> None:
    charge_id = _charge(payment_gateway, "before").json()["id"]
    assert payment_gateway.control("fail_500")["mode"] == "fail_500"

    responses = [
        _charge(payment_gateway),
        _charge(payment_gateway),
        _refund(payment_gateway, charge_id),
        httpx.get(f"{payment_gateway.url}/charges/{charge_id}"),
    ]

    assert [(r.status_code, r.json()) for r in responses] == [(500, {"error": "gateway_error"})] * 4
    [charge] = payment_gateway.charges()
    assert (charge["id"], charge["refunded_cents"]) == (charge_id, 0)
    payment_gateway.control("ok")
    assert _charge(payment_gateway).status_code == 201


def test_flaky_fails_n_times_once_after_charging_and_a_retry_recovers_the_charge(
    payment_gateway: PaymentGatewayProcess,
) -> None:
    payment_gateway.control("flaky", failures=3)

    # 1st failure: before charging.
    assert _charge(payment_gateway).status_code == 500
    assert payment_gateway.charges() == []
    # 2nd failure: after charging; the client never hears of the charge.
    assert _charge(payment_gateway).status_code == 500
    [recorded] = payment_gateway.charges()
    # 3rd failure: before processing (the key's charge stays the only one).
    assert _charge(payment_gateway).status_code == 500
    # Then ok: the retry under the same key gets the charge made during the 2nd failure.
    retry = _charge(payment_gateway)

    assert (retry.status_code, retry.json()) == (201, recorded)
    assert payment_gateway.charges() == [recorded]
    assert httpx.get(f"{payment_gateway.url}/_control").json()["mode"] == "ok"
    _wait_until(lambda: "processed (201), then injected 500" in payment_gateway.log())


def test_timeout_mode_holds_calls_then_answers_504_without_charging(
    payment_gateway: PaymentGatewayProcess,
) -> None:
    payment_gateway.control("timeout", delay_s=0.5)

    with pytest.raises(httpx.ReadTimeout):
        _charge(payment_gateway, "impatient", timeout=0.2)
    patient = _charge(payment_gateway, "patient")

    assert (patient.status_code, patient.json()) == (504, {"error": "gateway_timeout"})
    assert patient.elapsed >= timedelta(seconds=0.5)
    assert payment_gateway.charges() == []


@pytest.mark.parametrize(
    "body",
    [
        {"mode": "down"},
        {"mode": "flaky", "failures": -1},
        {"mode": "flaky", "failures": "2"},
        {"mode": "timeout", "delay_s": -1},
    ],
)
def test_a_bad_control_body_is_422(payment_gateway: PaymentGatewayProcess, body: Any) -> None:
    response = httpx.post(f"{payment_gateway.url}/_control", json=body)

    assert (response.status_code, response.json()) == (422, {"error": "invalid_request"})
    assert httpx.get(f"{payment_gateway.url}/_control").json()["mode"] == "ok"


def test_reset_forgets_charges_keys_and_mode(payment_gateway: PaymentGatewayProcess) -> None:
    first = _charge(payment_gateway).json()
    payment_gateway.control("fail_500")

    payment_gateway.reset()

    assert payment_gateway.charges() == []
    again = _charge(payment_gateway)
    assert again.status_code == 201
    assert again.json()["id"] != first["id"]


# -- webhooks -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    signature: str
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


class WebhookReceiver:
    """The shop's webhook endpoint, played on loopback: records every delivery and
    answers 500 to the first ``fail_first`` of them."""

    def __init__(self) -> None:
        self.fail_first = 0
        self.url = ""
        self.deliveries: list[Delivery] = []
        self.app = Starlette(routes=[Route("/hook", self._receive, methods=["POST"])])

    async def _receive(self, request: Request) -> Response:
        self.deliveries.append(Delivery(request.headers["gateway-signature"], await request.body()))
        return Response(status_code=500 if len(self.deliveries) <= self.fail_first else 200)

    def wait_for(self, count: int) -> list[Delivery]:
        _wait_until(lambda: len(self.deliveries) >= count)
        return list(self.deliveries)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    with live_server(receiver.app) as base_url:
        receiver.url = f"{base_url}/hook"
        yield receiver


def _signed(delivery: Delivery) -> bool:
    return verify(TEST_WEBHOOK_SECRET, delivery.body, delivery.signature, now=int(time.time()))


def test_charges_and_refunds_send_signed_webhooks(
    receiver: WebhookReceiver, start_payment_gateway: StartPaymentGateway
) -> None:
    gateway = start_payment_gateway(webhook_url=receiver.url)
    assert _charge(gateway, "declined", {**CHARGE, "token": "tok_declined"}).status_code == 402

    charge = _charge(gateway).json()
    [succeeded] = receiver.wait_for(1)
    refund = _refund(gateway, charge["id"], {"amount_cents": 500}).json()
    refunded = receiver.wait_for(2)[1]

    timestamp = int(succeeded.signature.split(",")[0].removeprefix("t="))
    assert succeeded.signature == sign(TEST_WEBHOOK_SECRET, succeeded.body, timestamp)
    assert _signed(succeeded)
    assert _signed(refunded)
    assert not verify("whsec_other", succeeded.body, succeeded.signature, now=timestamp)
    assert not verify(TEST_WEBHOOK_SECRET, succeeded.body, succeeded.signature, now=timestamp + 301)
    event = succeeded.event
    assert event["id"].startswith("evt_")
    assert event["type"] == "charge.succeeded"
    assert abs(event["created"] - time.time()) < 60
    assert event["data"] == charge
    assert refunded.event["type"] == "charge.refunded"
    assert refunded.event["id"] != event["id"]
    assert refunded.event["data"]["id"] == charge["id"]
    assert refunded.event["data"]["refunded_cents"] == 500
    assert refunded.event["data"]["refunds"] == [refund]


def test_a_refused_webhook_is_retried(
    receiver: WebhookReceiver, start_payment_gateway: StartPaymentGateway
) -> None:
    receiver.fail_first = 1
    gateway = start_payment_gateway(webhook_url=receiver.url)

    response = _charge(gateway)
    refused, accepted = receiver.wait_for(2)

    # The charge was answered without waiting for the delivery and its retry.
    assert response.elapsed < timedelta(seconds=WEBHOOK_RETRY_DELAYS_S[0])
    assert refused.event == accepted.event
    assert accepted.event["data"]["id"] == response.json()["id"]
    assert _signed(refused)
    assert _signed(accepted)
