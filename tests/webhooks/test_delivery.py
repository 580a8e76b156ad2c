"""Outbound webhooks: published with the mutation, delivered signed, retried, logged."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlalchemy import select

from bastion import Principal, Runtime
from bastion.jobs import JobRow
from bastion.testing import BastionClient, free_port
from bastion.webhooks import (
    InvalidSignature,
    WebhookDeliveryRow,
    WebhookSubscriptionRow,
    verify_signature,
)
from tests.jobs.conftest import run_until
from tests.webhooks.conftest import Endpoint, count

ADMIN = Principal("1", roles=frozenset({"admin"}), permissions=frozenset({"write:all"}))


async def subscribe(
    client: BastionClient, url: str, events: list[str] | None = None
) -> dict[str, Any]:
    with client.acting_as(ADMIN):
        response = await client.post(
            "/api/v1/admin/webhooks",
            json={"url": url, "events": events or ["order.*"], "reason": "test subscriber"},
        )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def order(client: BastionClient, *, fail: bool = False) -> Any:
    return await client.post("/api/v1/orders", json={"total_cents": 1234, "fail": fail})


def delivery(runtime: Runtime, delivery_id: int) -> WebhookDeliveryRow:
    with runtime.database.read_transaction() as session:
        row = session.get(WebhookDeliveryRow, delivery_id)
    assert row is not None
    return row


def settled(runtime: Runtime, delivery_id: int, *statuses: str) -> Any:
    return lambda: delivery(runtime, delivery_id).status in statuses


async def test_a_published_event_is_delivered_signed_and_logged(
    client: BastionClient, runtime: Runtime, endpoint: Endpoint
) -> None:
    subscription = await subscribe(client, endpoint.url)
    assert subscription["secret"].startswith("whsec_")
    published = (await order(client)).json()
    [delivery_id] = published["deliveries"]
    row = delivery(runtime, delivery_id)
    assert (row.status, row.attempts, row.event_id) == ("pending", 0, published["event_id"])

    await run_until(runtime, settled(runtime, delivery_id, "succeeded"))

    [received] = endpoint.received
    verify_signature(
        subscription["secret"],
        received.body,
        received.headers["bastion-signature"],
        now=time.time(),
    )
    with pytest.raises(InvalidSignature):
        verify_signature(
            "whsec_other", received.body, received.headers["bastion-signature"], now=time.time()
        )
    assert received.headers["bastion-event"] == "order.created"
    assert received.headers["bastion-delivery"] == str(delivery_id)
    assert received.headers["content-type"] == "application/json"
    assert received.headers["user-agent"] == "bastion-webhooks/1"
    body = json.loads(received.body)
    assert body["id"] == published["event_id"]
    assert body["type"] == "order.created"
    assert body["data"] == {"total_cents": 1234}
    assert body["created_at"].endswith("Z")
    row = delivery(runtime, delivery_id)
    assert (row.status, row.attempts, row.last_status_code, row.last_error) == (
        "succeeded",
        1,
        200,
        None,
    )
    assert row.last_duration_ms is not None
    assert row.delivered_at is not None
    assert row.next_attempt_at is None


async def test_a_failed_attempt_is_retried_and_both_are_counted(
    client: BastionClient, runtime: Runtime, endpoint: Endpoint
) -> None:
    endpoint.statuses = [500]
    await subscribe(client, endpoint.url)
    [delivery_id] = (await order(client)).json()["deliveries"]
    await run_until(runtime, settled(runtime, delivery_id, "succeeded"))
    row = delivery(runtime, delivery_id)
    assert (row.attempts, row.last_status_code) == (2, 200)
    assert [r.body for r in endpoint.received] == [endpoint.received[0].body] * 2
    assert row.job_id is not None
    job = runtime.jobs.store.get(row.job_id)
    assert job is not None
    assert (job.status, job.attempts, job.last_error) == (
        "succeeded",
        2,
        "bastion.webhooks.delivery.DeliveryFailed: HTTP 500",
    )


async def test_an_unreachable_endpoint_is_retried_then_dead(
    client: BastionClient, runtime: Runtime
) -> None:
    await subscribe(client, f"http://127.0.0.1:{free_port()}/hook")
    [delivery_id] = (await order(client)).json()["deliveries"]
    await run_until(runtime, settled(runtime, delivery_id, "dead"))
    row = delivery(runtime, delivery_id)
    assert row.attempts == 3  # webhooks.max_attempts in these tests
    assert row.last_status_code is None
    assert row.last_error is not None
    assert row.last_error.startswith("ConnectError")
    assert row.next_attempt_at is None
    assert row.job_id is not None
    job = runtime.jobs.store.get(row.job_id)
    assert job is not None
    assert (job.status, job.attempts, job.max_attempts) == ("dead", 3, 3)


async def test_a_slow_endpoint_times_out(
    client: BastionClient, runtime: Runtime, endpoint: Endpoint
) -> None:
    endpoint.delay_s = 1  # webhooks.timeout_s is 0.5 here
    await subscribe(client, endpoint.url)
    [delivery_id] = (await order(client)).json()["deliveries"]
    await run_until(runtime, settled(runtime, delivery_id, "failed", "dead"))
    row = delivery(runtime, delivery_id)
    assert row.last_error == "timed out after 0.5s"
    assert row.last_duration_ms is not None
    assert 450 <= row.last_duration_ms < 1000


async def test_410_gone_deactivates_the_subscription(
    client: BastionClient, runtime: Runtime, endpoint: Endpoint
) -> None:
    endpoint.statuses = [410]
    subscription = await subscribe(client, endpoint.url)
    [delivery_id] = (await order(client)).json()["deliveries"]
    await run_until(runtime, settled(runtime, delivery_id, "dead"))
    row = delivery(runtime, delivery_id)
    assert (row.attempts, row.last_status_code) == (1, 410)
    with runtime.database.read_transaction() as session:
        gone = session.get(WebhookSubscriptionRow, subscription["id"])
        assert gone is not None
        assert gone.active is False
    assert (await order(client)).json()["deliveries"] == []
    assert len(endpoint.received) == 1


async def test_a_rolled_back_mutation_publishes_nothing(
    client: BastionClient, runtime: Runtime, endpoint: Endpoint
) -> None:
    await subscribe(client, endpoint.url)
    response = await order(client, fail=True)
    assert response.status_code == 500
    assert count(runtime, WebhookDeliveryRow) == 0
    assert runtime.jobs.store.list() == []


async def test_only_matching_active_subscriptions_get_a_delivery(
    client: BastionClient, runtime: Runtime, endpoint: Endpoint
) -> None:
    everything = await subscribe(client, endpoint.url, ["*"])
    exact = await subscribe(client, endpoint.url, ["order.created", "order.refunded"])
    await subscribe(client, endpoint.url, ["order.refunded", "user.*"])
    await subscribe(client, endpoint.url, ["order.created.late"])
    deliveries = (await order(client)).json()["deliveries"]
    with runtime.database.read_transaction() as session:
        rows = session.scalars(
            select(WebhookDeliveryRow).where(WebhookDeliveryRow.id.in_(deliveries))
        ).all()
        assert sorted(r.subscription_id for r in rows) == sorted([everything["id"], exact["id"]])
        assert len({r.event_id for r in rows}) == 1
        jobs = session.scalars(select(JobRow)).all()
        assert sorted(j.args["delivery_id"] for j in jobs) == sorted(deliveries)
        assert {j.queue for j in jobs} == {"webhooks"}


async def test_redelivery_makes_a_new_attempt(
    client: BastionClient, runtime: Runtime, endpoint: Endpoint
) -> None:
    subscription = await subscribe(client, endpoint.url)
    [delivery_id] = (await order(client)).json()["deliveries"]
    path = f"/api/v1/admin/webhooks/{subscription['id']}/deliveries/{delivery_id}/redeliver"
    with client.acting_as(ADMIN):
        early = await client.post(path, json={"reason": "endpoint fixed"})
        assert early.status_code == 409  # the first attempt is still to come
        await run_until(runtime, settled(runtime, delivery_id, "succeeded"))
        first_job = delivery(runtime, delivery_id).job_id
        response = await client.post(path, json={"reason": "endpoint fixed"})
        assert response.status_code == 202
        assert response.json()["status"] == "pending"
        assert response.json()["job_id"] != first_job
        await run_until(runtime, settled(runtime, delivery_id, "succeeded"))
        elsewhere = await client.post(
            f"/api/v1/admin/webhooks/{subscription['id'] + 1}/deliveries/{delivery_id}/redeliver",
            json={"reason": "wrong subscription"},
        )
        assert elsewhere.status_code == 404
    assert delivery(runtime, delivery_id).attempts == 2
    assert len(endpoint.received) == 2
    signatures = {r.headers["bastion-signature"] for r in endpoint.received}
    assert len({r.body for r in endpoint.received}) == 1
    assert len(signatures) in (1, 2)  # signed afresh; equal only within the same second


async def test_a_deleted_subscriptions_pending_delivery_is_dropped(
    client: BastionClient, runtime: Runtime, endpoint: Endpoint
) -> None:
    subscription = await subscribe(client, endpoint.url)
    await order(client)
    with client.acting_as(ADMIN):
        response = await client.delete(
            f"/api/v1/admin/webhooks/{subscription['id']}", params={"reason": "retired"}
        )
    assert response.status_code == 204
    assert count(runtime, WebhookDeliveryRow) == 0
    [job] = runtime.jobs.store.list()
    await run_until(runtime, lambda: runtime.jobs.store.list()[0].status == "succeeded")
    assert endpoint.received == []
    assert job.args["delivery_id"] > 0


async def test_an_inactive_subscription_is_not_sent_to(
    client: BastionClient, runtime: Runtime, endpoint: Endpoint
) -> None:
    subscription = await subscribe(client, endpoint.url)
    [delivery_id] = (await order(client)).json()["deliveries"]
    with runtime.database.transaction() as session:
        row = session.get(WebhookSubscriptionRow, subscription["id"])
        assert row is not None
        row.active = False
    await run_until(runtime, settled(runtime, delivery_id, "dead"))
    assert delivery(runtime, delivery_id).last_error == "subscription inactive"
    assert endpoint.received == []


async def test_publishing_needs_a_mutation_and_a_valid_event_type(
    client: BastionClient, runtime: Runtime
) -> None:
    response = await client.get("/api/v1/peek")
    assert response.status_code == 500
    assert "queries are read-only" in response.json()["detail"]
    with (
        runtime.database.transaction() as session,
        pytest.raises(ValueError, match="lowercase dot-separated"),
    ):
        runtime.webhooks.publish(session, "Order Created", {})
    with runtime.database.transaction() as session:
        assert runtime.webhooks.publish(session, "order.created", {}).delivery_ids == []


async def test_a_delivery_continues_the_trace_of_the_request_that_published_it(
    client: BastionClient, runtime: Runtime, endpoint: Endpoint
) -> None:
    await subscribe(client, endpoint.url)
    [delivery_id] = (await order(client)).json()["deliveries"]

    await run_until(runtime, settled(runtime, delivery_id, "succeeded"))

    with runtime.database.read_transaction() as session:
        [enqueued_in] = session.scalars(
            select(JobRow.trace_context).where(JobRow.trace_context.is_not(None))
        )
    [received] = endpoint.received
    # Same trace as the request that published the event; the span is the delivery call's.
    assert received.headers["traceparent"].split("-")[1] == enqueued_in.split("-")[1]
    assert received.headers["traceparent"] != enqueued_in
