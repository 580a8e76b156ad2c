"""Inbound webhooks: verified, recorded once per event id, processed by a job."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from bastion import App, Runtime
from bastion.auth.users import create_user
from bastion.jobs import JobRow
from bastion.testing import BastionClient
from bastion.testing.plugin import RuntimeFactory
from bastion.webhooks import WebhookEventRow, sign
from tests.jobs.conftest import run_until
from tests.support.gateway import StartPaymentGateway
from tests.webhooks.apps import (
    GITHUB_SECRET,
    NEW_SECRET,
    OLD_SECRET,
    Payment,
    record_payment,
    record_push,
)
from tests.webhooks.conftest import count

PAYMENTS = "/api/v1/webhooks/payments"


def event(event_id: str = "evt_1", kind: str = "charge.succeeded") -> bytes:
    return json.dumps({"id": event_id, "type": kind, "data": {"amount_cents": 500}}).encode()


async def deliver(
    client: httpx.AsyncClient,
    body: bytes,
    *,
    secret: str = NEW_SECRET,
    at: float | None = None,
    header: str | None = None,
    path: str = PAYMENTS,
    name: str = "Gateway-Signature",
) -> httpx.Response:
    signature = header if header is not None else sign(secret, body, int(at or time.time()))
    return await client.post(
        path, content=body, headers={name: signature, "Content-Type": "application/json"}
    )


def payments(runtime: Runtime) -> list[str]:
    with runtime.database.read_transaction() as session:
        return list(session.scalars(select(Payment.event_id).order_by(Payment.id)))


def jobs_done(runtime: Runtime) -> bool:
    return all(job.status == "succeeded" for job in runtime.jobs.store.list())


async def test_a_signed_event_is_recorded_and_processed_by_a_job(
    client: BastionClient, runtime: Runtime
) -> None:
    response = await deliver(client, event("evt_1"))
    assert response.status_code == 200
    assert response.json() == {"received": True, "duplicate": False}
    with runtime.database.read_transaction() as session:
        [row] = session.scalars(select(WebhookEventRow))
        assert (row.source, row.event_id, row.payload["type"]) == (
            "/webhooks/payments",
            "evt_1",
            "charge.succeeded",
        )
        job = session.get(JobRow, row.job_id)
        assert job is not None
        assert (job.name, job.status, job.args["event"]["id"]) == (
            "record_payment",
            "queued",
            "evt_1",
        )
        assert job.request_id == response.headers["X-Request-ID"]
    await run_until(runtime, lambda: jobs_done(runtime))
    assert payments(runtime) == ["evt_1"]


async def test_a_repeated_event_id_is_answered_but_processed_once(
    client: BastionClient, runtime: Runtime
) -> None:
    first = await deliver(client, event("evt_twice"))
    again = await deliver(client, event("evt_twice"), secret=OLD_SECRET)
    assert first.json() == {"received": True, "duplicate": False}
    assert again.status_code == 200
    assert again.json() == {"received": True, "duplicate": True}
    assert len(runtime.jobs.store.list()) == 1
    await run_until(runtime, lambda: jobs_done(runtime))
    assert payments(runtime) == ["evt_twice"]
    # Ids are unique per source: another sender may use the same one.
    github = json.dumps({"delivery": "evt_twice"}).encode()
    response = await deliver(
        client,
        github,
        secret=GITHUB_SECRET,
        path="/api/v1/webhooks/github",
        name="Webhook-Signature",
    )
    assert response.json()["duplicate"] is False


def bad_header(label: str) -> str:
    now = int(time.time())
    return {
        "missing": "",
        "malformed": "t=yesterday,v1=abc",
        "wrong secret": sign("whsec_intruder", event(), now),
        "other body": sign(NEW_SECRET, event("evt_other"), now),
        "stale": sign(NEW_SECRET, event(), now - 301),
        "future": sign(NEW_SECRET, event(), now + 302),
    }[label]


@pytest.mark.parametrize(
    "label", ["missing", "malformed", "wrong secret", "other body", "stale", "future"]
)
async def test_a_bad_signature_is_400_and_stores_nothing(
    client: BastionClient, runtime: Runtime, label: str
) -> None:
    header = bad_header(label)
    headers = {"Gateway-Signature": header} if header else {}
    response = await client.post(PAYMENTS, content=event(), headers=headers)
    assert response.status_code == 400, label
    assert response.json()["code"] == "invalid_signature"
    assert count(runtime, WebhookEventRow) == 0
    assert runtime.jobs.store.list() == []


async def test_the_message_is_the_same_for_every_cause_and_localized(
    client: BastionClient,
) -> None:
    stale = await deliver(client, event(), at=time.time() - 1000)
    wrong = await deliver(client, event(), secret="whsec_intruder")
    assert stale.json()["detail"] == wrong.json()["detail"]
    spanish = await client.post(PAYMENTS, content=event(), headers={"Accept-Language": "es"})
    assert spanish.json()["title"] == "Firma no válida"


async def test_a_receiver_may_have_its_own_tolerance(client: BastionClient) -> None:
    body = json.dumps({"delivery": "d-1"}).encode()
    kwargs: dict[str, Any] = {
        "secret": GITHUB_SECRET,
        "path": "/api/v1/webhooks/github",
        "name": "Webhook-Signature",
    }
    assert (await deliver(client, body, at=time.time() - 120, **kwargs)).status_code == 400
    assert (await deliver(client, body, at=time.time() - 30, **kwargs)).status_code == 200


async def test_bad_json_is_400_after_the_signature_and_stores_nothing(
    client: BastionClient, runtime: Runtime
) -> None:
    response = await deliver(client, b'{"id": "evt_1",')
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"
    unsigned = await client.post(PAYMENTS, content=b"{not json")
    assert unsigned.json()["code"] == "invalid_signature"
    no_id = await deliver(client, b'{"type": "charge.succeeded"}')
    assert no_id.status_code == 422
    assert no_id.json()["errors"][0]["field"] == "event_id"
    assert (await deliver(client, b"[1, 2]")).status_code == 422
    assert count(runtime, WebhookEventRow) == 0
    assert runtime.jobs.store.list() == []


async def test_a_typed_handler_validates_the_payload_on_arrival(
    client: BastionClient, runtime: Runtime
) -> None:
    typed: dict[str, Any] = {"path": "/api/v1/webhooks/typed", "name": "Webhook-Signature"}
    refused = await deliver(client, event("evt_odd", kind="charge.lost"), **typed)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "event.type"
    assert count(runtime, WebhookEventRow) == 0
    assert (await deliver(client, event("evt_ok"), **typed)).status_code == 200
    await run_until(runtime, lambda: jobs_done(runtime))
    assert payments(runtime) == ["evt_ok"]


async def test_both_secrets_of_a_rotation_are_accepted(
    client: BastionClient, runtime: Runtime
) -> None:
    assert (await deliver(client, event("evt_new"), secret=NEW_SECRET)).status_code == 200
    assert (await deliver(client, event("evt_old"), secret=OLD_SECRET)).status_code == 200
    body = event("evt_both")
    stamp = int(time.time())
    rotating = f"{sign(OLD_SECRET, body, stamp)},v1={sign('whsec_next', body, stamp)[-64:]}"
    assert (await deliver(client, body, header=rotating)).status_code == 200
    assert count(runtime, WebhookEventRow) == 3


async def test_a_browser_session_needs_no_csrf_token_but_the_signature_still_counts(
    client: BastionClient, runtime: Runtime
) -> None:
    with runtime.database.transaction() as session:
        create_user(session, runtime.passwords, email="ann@example.com", password="p" * 12)
    await client.sign_in("ann@example.com", "p" * 12)
    del client.headers["X-CSRF-Token"]
    assert (await deliver(client, event("evt_cookie"))).status_code == 200
    assert (await deliver(client, event("evt_x"), secret="whsec_bad")).status_code == 400


async def test_the_body_limit_applies(make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime(server={"max_body_bytes": 1024})
    await runtime.startup()
    async with BastionClient(runtime.asgi()) as client:
        body = json.dumps({"id": "evt_big", "pad": "x" * 2000}).encode()
        response = await deliver(client, body)
    assert response.status_code == 413
    assert count(runtime, WebhookEventRow) == 0


def test_declarations_are_checked() -> None:
    other = App("other")
    with pytest.raises(TypeError, match="secret"):
        other.webhook_receiver("/hooks", handler=record_payment)
    with pytest.raises(TypeError, match="secret"):
        other.webhook_receiver(
            "/hooks", handler=record_payment, secret=lambda s: "x", secret_setting="a.b"
        )
    with pytest.raises(ValueError, match="must start with"):
        other.webhook_receiver("hooks", handler=record_payment, secret=lambda s: "x")

    @other.job()
    def two_arguments(ctx: Any, event: dict[str, Any], extra: int) -> None: ...

    with pytest.raises(TypeError, match="`event`"):
        other.webhook_receiver("/hooks", handler=two_arguments, secret=lambda s: "x")
    other.webhook_receiver("/hooks", handler=record_push, secret=lambda s: "x")
    with pytest.raises(ValueError, match="already taken"):
        other.webhook_receiver("/hooks", handler=record_push, secret=lambda s: "y")


async def test_a_runtime_refuses_an_empty_secret_or_a_foreign_handler(
    make_runtime: RuntimeFactory,
) -> None:
    empty = App("empty")

    @empty.job()
    def handle(ctx: Any, event: dict[str, Any]) -> None: ...

    empty.webhook_receiver("/hooks", handler=handle, secret_setting="app.debug")
    with pytest.raises(ValueError, match="not a secret"):
        make_runtime(empty)
    blank = App("blank")
    blank.jobs.add(handle.spec)
    blank.webhook_receiver("/hooks", handler=handle, secret=lambda s: ["whsec_a", ""])
    with pytest.raises(ValueError, match="is empty"):
        make_runtime(blank)
    foreign = App("foreign")
    foreign.webhook_receiver("/hooks", handler=record_payment, secret=lambda s: "whsec_a")
    with pytest.raises(ValueError, match="not a job of this app"):
        make_runtime(foreign)
    missing = App("missing")
    missing.jobs.add(handle.spec)
    missing.webhook_receiver("/hooks", handler=handle, secret_setting="hooks.nothing")
    with pytest.raises(ValueError, match="does not exist"):
        make_runtime(missing)


@pytest.mark.slow
async def test_the_payment_gateways_signed_webhooks_are_processed(
    runtime: Runtime, live_url: str, start_payment_gateway: StartPaymentGateway
) -> None:
    """The gateway process signs with its own code; both sides must agree on the format."""
    gateway = start_payment_gateway(webhook_url=f"{live_url}{PAYMENTS}", webhook_secret=OLD_SECRET)
    async with httpx.AsyncClient() as http:
        charge = await http.post(
            f"{gateway.url}/charges",
            json={"amount_cents": 1500, "currency": "usd", "token": "tok_visa"},
            headers={"Idempotency-Key": "order-1"},
        )
    assert charge.status_code == 201
    await run_until(runtime, lambda: bool(payments(runtime)))
    with runtime.database.read_transaction() as session:
        [kind] = session.scalars(select(Payment.kind))
        [received] = session.scalars(select(WebhookEventRow))
    assert kind == "charge.succeeded"
    assert received.payload["data"]["id"] == charge.json()["id"]
