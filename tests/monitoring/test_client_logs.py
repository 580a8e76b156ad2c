"""Client log capture: ``POST /api/v1/client-logs`` validates, caps and limits batches, one
job per batch stores them scrubbed, and a retention job deletes old ones."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bastion import App, Runtime
from bastion.auth.users import create_user
from bastion.db.tables import utcnow
from bastion.jobs import JobRow
from bastion.monitoring import ClientLogRow, recent_client_logs
from bastion.monitoring.client_logs import INGEST_JOB, PURGE_JOB
from bastion.testing import BastionClient, job_is, run_worker_until
from tests.monitoring.ops_app import app, client_log_purge

URL = "/api/v1/client-logs"
PASSWORD = "correct horse battery staple"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PAGE_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
ENTRY = {"level": "error", "message": "TypeError: cart is undefined", "area": "checkout"}


@pytest.fixture
def bastion_app() -> App:
    return app


@pytest.fixture
def bastion_settings_overrides() -> dict[str, Any]:
    return {
        "jobs": {"poll_interval_s": 0.05},
        "client_logs": {
            "max_body_bytes": 2048,
            "max_entries": 3,
            "max_message_chars": 100,
            "max_stack_chars": 200,
            "rate_limit": "100/minute",
            "anonymous_rate_limit": "50/minute",
        },
    }


def ingest_jobs(runtime: Runtime) -> list[JobRow]:
    with runtime.database.read_transaction() as session:
        rows = list(
            session.scalars(select(JobRow).where(JobRow.name == INGEST_JOB).order_by(JobRow.id))
        )
        session.expunge_all()
        return rows


def stored(runtime: Runtime) -> list[ClientLogRow]:
    with runtime.database.read_transaction() as session:
        rows = list(session.scalars(select(ClientLogRow).order_by(ClientLogRow.id)))
        session.expunge_all()
        return rows


async def ingest_all(runtime: Runtime) -> None:
    """Run a worker until every queued ingest job has succeeded."""
    await run_worker_until(
        runtime, lambda: all(job.status == "succeeded" for job in ingest_jobs(runtime))
    )


async def sign_in(client: BastionClient, runtime: Runtime) -> str:
    with runtime.database.transaction() as session:
        user = create_user(
            session, runtime.passwords, email="ann@example.com", password=PASSWORD, roles=["user"]
        )
        session.flush()
        user_id = str(user.id)
    await client.sign_in("ann@example.com", PASSWORD)
    return user_id


async def test_a_batch_is_accepted_at_once_and_stored_by_one_job_with_its_correlation_ids(
    client: BastionClient, runtime: Runtime
) -> None:
    batch = {
        "entries": [
            {
                **ENTRY,
                "stack": "at checkout.js:10",
                "url": "https://shop.example/checkout",
                "trace_id": TRACE_ID,
                "request_id": "req-failed-call",
                "timestamp": "2026-11-29T10:00:00Z",
                "context": {"cart_items": 2},
            },
            {"level": "info", "message": "page shown"},
        ]
    }
    # The posting request continues the page's trace (W3C traceparent).
    headers = {
        "User-Agent": "TestBrowser/1.0",
        "traceparent": f"00-{PAGE_TRACE_ID}-00f067aa0ba902b7-01",
    }
    response = await client.post(URL, json=batch, headers=headers)
    assert response.status_code == 202
    assert response.json() == {"accepted": 2}
    request_id = response.headers["x-request-id"]
    [job] = ingest_jobs(runtime)
    assert (job.queue, job.status, job.request_id) == ("bastion", "queued", request_id)
    assert job.args["client_ip"] == "127.0.0.1"
    assert stored(runtime) == []  # nothing written on the request path

    await ingest_all(runtime)
    first, second = stored(runtime)
    assert (first.level, first.message, first.area, first.stack) == (
        "error",
        ENTRY["message"],
        "checkout",
        "at checkout.js:10",
    )
    # The entry's own ids lead to the failed server call; an entry without any gets
    # those of the request that posted the batch.
    assert (first.trace_id, first.request_id) == (TRACE_ID, "req-failed-call")
    assert (second.trace_id, second.request_id) == (PAGE_TRACE_ID, request_id)
    assert first.logged_at is not None
    assert first.logged_at.isoformat() == "2026-11-29T10:00:00+00:00"
    assert (first.user_id, first.client_ip, first.user_agent) == (
        None,
        "127.0.0.1",
        "TestBrowser/1.0",
    )
    assert first.context == {"cart_items": 2}
    assert first.url == "https://shop.example/checkout"


async def test_a_signed_in_browser_posts_with_its_csrf_token_and_rows_carry_its_user(
    client: BastionClient, runtime: Runtime
) -> None:
    user_id = await sign_in(client, runtime)
    token = client.headers.pop("X-CSRF-Token")
    refused = await client.post(URL, json={"entries": [ENTRY]})
    assert (refused.status_code, refused.json()["code"]) == (403, "csrf_failed")
    accepted = await client.post(URL, json={"entries": [ENTRY]}, headers={"X-CSRF-Token": token})
    assert accepted.status_code == 202
    await ingest_all(runtime)
    [row] = stored(runtime)
    assert row.user_id == user_id


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"entries": [{**ENTRY, "level": "fatal"}]}, "entries[0].level", "literal_error"),
        ({"entries": [{"level": "info"}]}, "entries[0].message", "missing"),
        ({"entries": []}, "entries", "too_short"),
        ({"entries": [{**ENTRY, "trace_id": "not-a-trace"}]}, "entries[0].trace_id", None),
        (
            {"entries": [{**ENTRY, "timestamp": "2026-11-29T10:00:00"}]},
            "entries[0].timestamp",
            None,
        ),
        ({"entries": [{**ENTRY, "colour": "red"}]}, "entries[0].colour", "extra_forbidden"),
        ({"logs": []}, "entries", "missing"),
        ([ENTRY], "body", "model_type"),
        ({"entries": [ENTRY] * 4}, "entries", "too_long"),
    ],
)
async def test_an_invalid_batch_is_422_naming_the_field_and_queues_nothing(
    client: BastionClient, runtime: Runtime, body: Any, field: str, code: str | None
) -> None:
    response = await client.post(URL, json=body)
    assert response.status_code == 422
    problem = response.json()
    assert problem["code"] == "validation_failed"
    [error] = [e for e in problem["errors"] if e["field"] == field]
    if code is not None:
        assert error["code"] == code
    assert ingest_jobs(runtime) == []


async def test_too_many_entries_are_refused_with_a_localized_message(
    client: BastionClient,
) -> None:
    response = await client.post(
        URL, json={"entries": [ENTRY] * 4}, headers={"Accept-Language": "es"}
    )
    [error] = response.json()["errors"]
    assert error == {
        "field": "entries",
        "code": "too_long",
        "message": "Envía como máximo 3 elemento(s).",
    }


async def test_malformed_json_is_400(client: BastionClient) -> None:
    response = await client.post(
        URL, content=b'{"entries": [', headers={"Content-Type": "application/json"}
    )
    assert (response.status_code, response.json()["code"]) == (400, "invalid_json")


async def test_a_body_over_the_cap_is_413_declared_or_streamed(
    client: BastionClient, runtime: Runtime
) -> None:
    big = json.dumps({"entries": [{**ENTRY, "message": "x" * 3000}]}).encode()
    declared = await client.post(URL, content=big, headers={"Content-Type": "application/json"})
    assert declared.status_code == 413
    assert declared.json()["code"] == "payload_too_large"
    assert "2048" in declared.json()["detail"]

    async def chunks() -> Any:
        for start in range(0, len(big), 500):
            yield big[start : start + 500]

    streamed = await client.post(
        URL, content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert (streamed.status_code, streamed.json()["code"]) == (413, "payload_too_large")
    assert ingest_jobs(runtime) == []


async def test_long_messages_and_stacks_are_cut_not_refused(
    client: BastionClient, runtime: Runtime
) -> None:
    entry = {**ENTRY, "message": "m" * 150, "stack": "s" * 250, "area": "a" * 300}
    response = await client.post(URL, json={"entries": [entry]})
    assert response.status_code == 202
    await ingest_all(runtime)
    [row] = stored(runtime)
    assert (len(row.message), len(row.stack or ""), len(row.area or "")) == (100, 200, 200)


async def test_secrets_are_scrubbed_before_they_are_stored(
    client: BastionClient, runtime: Runtime
) -> None:
    entry = {
        "level": "error",
        "message": "login failed with password=hunter2 for card 4111 1111 1111 1111",
        "stack": "Authorization: Bearer eyJhbGciOi.secret.token",
        "url": "https://shop.example/reset?token=abc123",
        "context": {"password": "hunter2", "api_key": "k-123", "step": "payment"},
    }
    assert (await client.post(URL, json={"entries": [entry]})).status_code == 202
    await ingest_all(runtime)
    [row] = stored(runtime)
    text = json.dumps([row.message, row.stack, row.url, row.context])
    for secret in ("hunter2", "4111 1111 1111 1111", "eyJhbGciOi", "abc123", "k-123"):
        assert secret not in text
    assert row.context == {"password": "[redacted]", "api_key": "[redacted]", "step": "payment"}
    assert row.message == "login failed with password=[redacted] for card [redacted]"


async def test_anonymous_callers_have_a_stricter_limit_than_signed_in_users(
    make_runtime: Any,
) -> None:
    runtime: Runtime = make_runtime(
        client_logs={"rate_limit": "4/minute", "anonymous_rate_limit": "2/minute"}
    )
    await runtime.startup()
    async with BastionClient(runtime.asgi()) as client:
        statuses = [(await client.post(URL, json={"entries": [ENTRY]})).status_code for _ in "abc"]
        assert statuses == [202, 202, 429]
        refused = await client.post(URL, json={"entries": [ENTRY]})
        assert refused.json()["code"] == "rate_limited"
        assert int(refused.headers["retry-after"]) >= 1
        await sign_in(client, runtime)
        statuses = [
            (await client.post(URL, json={"entries": [ENTRY]})).status_code for _ in "abcde"
        ]
        assert statuses == [202, 202, 202, 202, 429]
    assert len(ingest_jobs(runtime)) == 6


async def test_anonymous_posts_are_refused_when_not_allowed(make_runtime: Any) -> None:
    runtime: Runtime = make_runtime(client_logs={"allow_anonymous": False})
    await runtime.startup()
    async with BastionClient(runtime.asgi()) as client:
        response = await client.post(URL, json={"entries": [ENTRY]})
        assert (response.status_code, response.json()["code"]) == (401, "not_authenticated")
        await sign_in(client, runtime)
        assert (await client.post(URL, json={"entries": [ENTRY]})).status_code == 202


async def test_an_unreachable_limit_store_fails_closed_when_configured(make_runtime: Any) -> None:
    runtime: Runtime = make_runtime(
        ratelimit={
            "storage_url": "redis://127.0.0.1:1/0",
            "fail_open": False,
            "exempt_paths": [URL],
        }
    )
    await runtime.startup()
    async with BastionClient(runtime.asgi()) as client:
        response = await client.post(URL, json={"entries": [ENTRY]})
    assert (response.status_code, response.json()["code"]) == (503, "service_unavailable")
    assert ingest_jobs(runtime) == []


async def test_the_retention_job_deletes_old_entries(
    client: BastionClient, runtime: Runtime
) -> None:
    assert PURGE_JOB in runtime.app.jobs.schedules
    assert (await client.post(URL, json={"entries": [ENTRY]})).status_code == 202
    await ingest_all(runtime)
    with runtime.database.transaction() as session:
        session.add(
            ClientLogRow(
                received_at=utcnow() - timedelta(days=8), level="error", message="long ago"
            )
        )
    job_id = await runtime.jobs.enqueue(client_log_purge)
    await run_worker_until(runtime, job_is(runtime, job_id, "succeeded"))
    assert [row.message for row in stored(runtime)] == [ENTRY["message"]]
    with runtime.database.read_transaction() as session:
        [job] = session.scalars(select(JobRow).where(JobRow.id == job_id))
        assert job.result == 1


async def test_recent_client_logs_are_newest_first_and_tail_after_an_id(
    client: BastionClient, runtime: Runtime
) -> None:
    entries = [{"level": "warn", "message": message} for message in ("one", "two", "three")]
    assert (await client.post(URL, json={"entries": entries})).status_code == 202
    await ingest_all(runtime)
    with runtime.database.read_transaction() as session:
        latest = recent_client_logs(session, limit=2)
        assert [log.message for log in latest] == ["three", "two"]
        tail = recent_client_logs(session, after_id=latest[1].id)
        assert [log.message for log in tail] == ["three"]
        assert recent_client_logs(session, after_id=latest[0].id) == []
