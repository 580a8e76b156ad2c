"""Alert rules end to end: real requests fail, the rule fires once, notifies a real
webhook peer and the mailer, stays quiet within its cooldown, and resolves once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
from sqlalchemy import select

from bastion import Runtime
from bastion.alerts import evaluate
from bastion.auth.users import create_user
from bastion.jobs.tables import JobRow
from bastion.testing import BastionClient
from bastion.testing.client import free_port
from bastion.testing.jobs import run_worker_until
from tests.alerts.apps import doomed
from tests.alerts.conftest import SlackPeer, history, minute_start, record_traffic, states

pytestmark = pytest.mark.db

PASSWORD = "correct horse battery staple"
ERROR_RATE = {
    "name": "api-errors",
    "kind": "error_rate",
    "threshold": 0.05,
    "window_s": 300,
    "min_requests": 10,
}


def alerting(**section: Any) -> dict[str, Any]:
    return {"cooldown_s": 3600, **section}


async def signed_in(client: BastionClient, runtime: Runtime, *, roles: list[str]) -> None:
    email = f"{'-'.join(roles)}@example.com"
    with runtime.database.transaction() as session:
        create_user(session, runtime.passwords, email=email, password=PASSWORD, roles=roles)
    await client.sign_in(email, PASSWORD)


async def test_an_error_rate_above_threshold_notifies_once_then_resolves_once(
    make_runtime: Any, slack: SlackPeer
) -> None:
    runtime: Runtime = make_runtime(
        alerts=alerting(rules=[ERROR_RATE], webhook_urls=[slack.url], email_to=["ops@example.com"])
    )
    await runtime.startup()
    outbox = runtime.mail.transport.sent  # type: ignore[attr-defined]
    async with BastionClient(runtime.asgi()) as client:
        for _ in range(6):
            assert (await client.get("/api/v1/boom")).status_code == 500
        for _ in range(4):
            assert (await client.get("/api/v1/fine")).status_code == 200
        runtime.request_stats.flush(runtime.database)  # type: ignore[attr-defined]

        t0 = datetime.now(UTC)
        [fired] = await evaluate(runtime, t0)
        assert fired.kind == "fired"
        assert fired.value == pytest.approx(0.6)
        assert fired.notified == {"log": "ok", "webhook:1": "ok", "email": "ok"}
        # Still breached, within the cooldown: nobody is told again.
        assert await evaluate(runtime, t0 + timedelta(seconds=60)) == []
        assert await evaluate(runtime, t0 + timedelta(seconds=120)) == []
        assert len(slack.received) == 1
        assert len(outbox) == 1
        [payload] = slack.received
        assert "FIRING: api-errors" in payload["text"]
        assert "error rate 60.0%" in payload["text"]
        assert "(6 of 10 requests answered 5xx" in payload["text"]
        assert [block["type"] for block in payload["blocks"]] == ["header", "section", "context"]
        assert outbox[0]["Subject"] == "[alerting] FIRING: api-errors"
        assert outbox[0]["To"] == "ops@example.com"
        assert states(runtime)["api-errors"].state == "firing"

        # Good traffic brings the rate under 5%: one resolved notification, then quiet.
        for _ in range(150):
            assert (await client.get("/api/v1/fine")).status_code == 200
        runtime.request_stats.flush(runtime.database)  # type: ignore[attr-defined]
        [resolved] = await evaluate(runtime, t0 + timedelta(seconds=180))
        assert resolved.kind == "resolved"
        assert resolved.value == pytest.approx(6 / 160)
        assert await evaluate(runtime, t0 + timedelta(seconds=240)) == []
        assert len(slack.received) == 2
        assert "RESOLVED: api-errors" in slack.texts[1]
        assert [message["Subject"] for message in outbox] == [
            "[alerting] FIRING: api-errors",
            "[alerting] RESOLVED: api-errors",
        ]

        state = states(runtime)["api-errors"]
        assert (state.state, state.since) == ("ok", t0 + timedelta(seconds=180))
        assert [(e.kind, e.rule, e.threshold) for e in history(runtime)] == [
            ("fired", "api-errors", 0.05),
            ("resolved", "api-errors", 0.05),
        ]
        assert all(
            e.notified == {"log": "ok", "webhook:1": "ok", "email": "ok"} for e in history(runtime)
        )

        # The ops API shows the same, to admins only.
        anonymous = await client.get("/api/v1/admin/alerts")
        assert (anonymous.status_code, anonymous.json()["code"]) == (401, "not_authenticated")
        await signed_in(client, runtime, roles=["user"])
        user = await client.get("/api/v1/admin/alerts")
        assert (user.status_code, user.json()["code"]) == (403, "permission_denied")
        await signed_in(client, runtime, roles=["admin"])
        body = (await client.get("/api/v1/admin/alerts")).json()
        assert [(s["rule"], s["state"]) for s in body["states"]] == [("api-errors", "ok")]
        assert [e["kind"] for e in body["events"]] == ["resolved", "fired"]
        assert body["events"][1]["notified"]["webhook:1"] == "ok"
        one = (await client.get("/api/v1/admin/alerts", params={"limit": 1})).json()
        assert [e["kind"] for e in one["events"]] == ["resolved"]
        bad = await client.get("/api/v1/admin/alerts", params={"limit": 0})
        assert (bad.status_code, bad.json()["code"]) == (422, "validation_failed")


async def test_a_rule_still_firing_after_its_cooldown_is_notified_again_once(
    make_runtime: Any, slack: SlackPeer
) -> None:
    rule = {**ERROR_RATE, "window_s": 3600}
    runtime: Runtime = make_runtime(
        alerts=alerting(rules=[rule], webhook_urls=[slack.url], cooldown_s=600)
    )
    t0 = minute_start()
    record_traffic(runtime, t0, requests=100, errors=30)
    kinds = []
    for seconds in (0, 300, 599, 600, 660, 1199, 1200):
        kinds.append([e.kind for e in await evaluate(runtime, t0 + timedelta(seconds=seconds))])
    assert kinds == [["fired"], [], [], ["repeated"], [], [], ["repeated"]]
    assert len(slack.received) == 3
    assert "STILL FIRING: api-errors" in slack.texts[1]
    assert states(runtime)["api-errors"].since == t0  # firing since the first time


async def test_too_few_requests_never_fire_and_moving_past_the_window_resolves(
    make_runtime: Any,
) -> None:
    runtime: Runtime = make_runtime(alerts=alerting(rules=[ERROR_RATE]))
    t0 = minute_start()
    record_traffic(runtime, t0, requests=2, errors=1)
    assert await evaluate(runtime, t0) == []
    assert states(runtime)["api-errors"].value is None

    record_traffic(runtime, t0, requests=20, errors=10)
    assert [e.kind for e in await evaluate(runtime, t0)] == ["fired"]
    # Ten minutes on, the failing minute is out of the window: too little traffic to
    # call it an outage, so the alert resolves.
    [resolved] = await evaluate(runtime, t0 + timedelta(minutes=10))
    assert (resolved.kind, resolved.value) == ("resolved", None)
    assert "0 requests in the last 5 min" in resolved.message


async def test_a_dead_webhook_is_recorded_in_the_event_and_the_state_still_moves(
    make_runtime: Any, slack: SlackPeer
) -> None:
    slack.status = 500
    down = f"http://127.0.0.1:{free_port()}/hook"
    runtime: Runtime = make_runtime(
        alerts=alerting(rules=[ERROR_RATE], webhook_urls=[down, slack.url], email_to=["o@x.io"]),
        mail={"backend": "smtp", "smtp_host": "127.0.0.1", "smtp_port": free_port()},
    )
    t0 = minute_start()
    record_traffic(runtime, t0, requests=40, errors=40)
    [fired] = await evaluate(runtime, t0)
    assert fired.notified["log"] == "ok"
    assert fired.notified["webhook:1"] == "error: upstream_failed"
    assert fired.notified["webhook:2"] == "error: upstream_failed"
    assert fired.notified["email"].startswith("error: SMTPConnectError: ")
    [event] = history(runtime)
    assert event.notified == fired.notified
    assert states(runtime)["api-errors"].state == "firing"
    # The failed notification is not retried within the cooldown.
    assert await evaluate(runtime, t0 + timedelta(seconds=60)) == []
    assert len(slack.received) == 1


async def test_p95_latency_fires_above_its_threshold_in_milliseconds(make_runtime: Any) -> None:
    rule = {"name": "slow", "kind": "p95_latency", "threshold": 1000, "route": "/api/v1/fine"}
    runtime: Runtime = make_runtime(alerts=alerting(rules=[rule]))
    t0 = minute_start()
    record_traffic(runtime, t0, requests=100, latency_s=0.05)
    record_traffic(runtime, t0, requests=100, latency_s=3, route="/api/v1/other")
    assert await evaluate(runtime, t0) == []  # the slow requests were on another route
    record_traffic(runtime, t0, requests=20, latency_s=3)
    [fired] = await evaluate(runtime, t0)
    assert fired.value is not None
    assert fired.value > 1000
    assert "p95 latency" in fired.message
    assert "on /api/v1/fine" in fired.message


async def test_dead_jobs_fire_while_any_job_is_dead(make_runtime: Any) -> None:
    rule = {"name": "dead", "kind": "dead_jobs", "threshold": 0}
    # The cron job would evaluate too while the worker runs; this test evaluates itself.
    runtime: Runtime = make_runtime(alerts=alerting(rules=[rule], enabled=False))
    assert await evaluate(runtime) == []
    with runtime.database.transaction() as session:
        job_id = doomed.enqueue(session)
    await run_worker_until(
        runtime,
        lambda: runtime.jobs.store.get(job_id).status == "dead",  # type: ignore[union-attr]
    )
    [fired] = await evaluate(runtime)
    assert (fired.kind, fired.value, fired.message) == ("fired", 1, "dead jobs: 1")


async def test_an_open_circuit_fires_and_a_success_resolves_it(
    make_runtime: Any, slack: SlackPeer
) -> None:
    rule = {"name": "circuits", "kind": "circuit_open", "threshold": 0, "channels": ["log"]}
    runtime: Runtime = make_runtime(
        alerts=alerting(rules=[rule], webhook_urls=[slack.url]),
        integrations={"breaker_failure_threshold": 2, "breaker_reset_timeout_s": 0.01},
    )
    down = f"http://127.0.0.1:{free_port()}/charges"
    for _ in range(2):
        with pytest.raises(Exception, match="upstream"):
            await runtime.http.post("gateway", down)
    [fired] = await evaluate(runtime)
    assert (fired.value, fired.message) == (1, "open circuits: gateway")
    assert fired.notified == {"log": "ok"}  # channels = ["log"]: the webhook is not told
    assert slack.received == []

    await anyio.sleep(0.02)  # past the reset timeout: the next call is the trial
    await runtime.http.post("gateway", slack.url, json={})
    [resolved] = await evaluate(runtime)
    assert resolved.kind == "resolved"
    assert resolved.message == "open circuits: none"


@pytest.mark.redis
async def test_breakers_shared_through_redis_are_seen_by_every_process(
    make_runtime: Any, redis_url: str
) -> None:
    rule = {"name": "circuits", "kind": "circuit_open", "threshold": 0}
    shared = {"breaker_failure_threshold": 1, "breaker_storage": "redis"}
    server = make_runtime(integrations=shared, redis={"url": redis_url})
    worker: Runtime = make_runtime(
        alerts=alerting(rules=[rule]), integrations=shared, redis={"url": redis_url}
    )
    dependency = f"gateway-{free_port()}"
    with pytest.raises(Exception, match="upstream"):
        await server.http.post(dependency, f"http://127.0.0.1:{free_port()}/charges")
    try:
        [fired] = await evaluate(worker)
        assert dependency in fired.message
    finally:
        await server.http.breaker.success(dependency)


async def test_failing_critical_health_checks_fire(make_runtime: Any) -> None:
    rule = {"name": "health", "kind": "health", "threshold": 0}
    runtime: Runtime = make_runtime(alerts=alerting(rules=[rule]))
    gateway_up = True

    async def gateway() -> None:
        if not gateway_up:
            raise ConnectionError("gateway unreachable")

    runtime.health.add("gateway", gateway)
    runtime.health.add("search", _failing, critical=False)  # degraded only: no alert
    assert await evaluate(runtime) == []
    gateway_up = False
    [fired] = await evaluate(runtime)
    assert (
        fired.message == "unhealthy; failing checks: gateway (ConnectionError: gateway unreachable)"
    )
    gateway_up = True
    assert [e.kind for e in await evaluate(runtime)] == ["resolved"]


async def _failing() -> None:
    raise ConnectionError("search is down")


async def test_two_evaluations_at_once_notify_once(make_runtime: Any, slack: SlackPeer) -> None:
    rules = [{**ERROR_RATE, "name": f"rule-{n}"} for n in range(3)]
    section = alerting(rules=rules, webhook_urls=[slack.url])
    first: Runtime = make_runtime(alerts=section)
    second: Runtime = make_runtime(alerts=section)
    t0 = minute_start()
    record_traffic(first, t0, requests=50, errors=50)
    results: list[list[Any]] = []

    async def run(runtime: Runtime) -> None:
        results.append(await evaluate(runtime, t0 + timedelta(seconds=5)))

    async with anyio.create_task_group() as group:
        group.start_soon(run, first)
        group.start_soon(run, second)
    events = [event for batch in results for event in batch]
    assert sorted(e.rule for e in events) == ["rule-0", "rule-1", "rule-2"]
    assert len(slack.received) == 3
    assert [e.kind for e in history(first)] == ["fired"] * 3


async def test_the_cron_job_evaluates_the_rules_in_the_worker(make_runtime: Any) -> None:
    rule = {"name": "dead", "kind": "dead_jobs", "threshold": 0}
    runtime: Runtime = make_runtime(alerts=alerting(rules=[rule]))
    await run_worker_until(runtime, lambda: "dead" in states(runtime))
    assert states(runtime)["dead"].state == "ok"


async def test_the_cron_job_skips_minutes_outside_the_configured_schedule(
    make_runtime: Any,
) -> None:
    rule = {"name": "dead", "kind": "dead_jobs", "threshold": 0}
    runtime: Runtime = make_runtime(alerts=alerting(rules=[rule], schedule="0 0 29 2 *"))

    def finished() -> list[Any]:
        with runtime.database.read_transaction() as session:
            return list(
                session.scalars(
                    select(JobRow.result).where(
                        JobRow.name == "bastion.alerts", JobRow.status == "succeeded"
                    )
                )
            )

    await run_worker_until(runtime, lambda: bool(finished()))
    assert finished() == [{"rules": 0, "events": 0}]
    assert states(runtime) == {}
