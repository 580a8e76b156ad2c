"""Jobs: enqueued with their mutation, run by a worker, retried, timed out, fenced."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import pytest
from sqlalchemy import select

from bastion import Runtime
from bastion.errors import ValidationFailed
from bastion.jobs import Outcome
from bastion.jobs.store import JOBS
from bastion.testing import BastionClient
from bastion.testing.plugin import RuntimeFactory
from tests.jobs.apps import (
    CALLS,
    GATES,
    Effect,
    flaky,
    gated,
    greet_v1,
    greet_v2,
    hopeless,
    later,
    progressing,
    record,
    sleepy,
    slow_write,
    stamp,
)
from tests.jobs.conftest import eventually, job, run_until, status_is


def effect_keys(runtime: Runtime) -> list[str]:
    with runtime.database.read_transaction() as session:
        return list(session.scalars(select(Effect.key).order_by(Effect.id)))


async def test_a_job_enqueued_in_a_mutation_runs_once_and_stores_its_result(
    client: BastionClient, runtime: Runtime
) -> None:
    response = await client.post("/api/v1/effects", params={"key": "a"})
    assert response.status_code == 201
    job_id = response.json()
    assert job(runtime, job_id).status == "queued"
    await run_until(runtime, status_is(runtime, job_id, "succeeded"))
    row = job(runtime, job_id)
    assert row.result == {"recorded": "a"}
    assert row.attempts == 1
    assert row.claim_token is None
    assert row.lease_until is None
    assert effect_keys(runtime) == ["a"]


async def test_a_rolled_back_mutation_leaves_no_job(
    client: BastionClient, runtime: Runtime
) -> None:
    response = await client.post("/api/v1/effects", params={"key": "ghost", "fail": "true"})
    assert response.status_code == 500
    assert runtime.jobs.store.list() == []


async def test_enqueue_checks_arguments_and_refuses_queries(
    client: BastionClient, runtime: Runtime
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        await runtime.jobs.enqueue(flaky, key="k", failures="many")
    assert [e.field for e in caught.value.errors] == ["failures"]
    with pytest.raises(ValidationFailed):
        await runtime.jobs.enqueue(flaky, key="k", failures=1, extra=True)
    response = await client.get("/api/v1/sneaky-enqueue")
    assert response.status_code == 500
    assert "queries are read-only" in response.json()["detail"]
    assert runtime.jobs.store.list() == []


async def test_arguments_round_trip_through_json_with_their_types(runtime: Runtime) -> None:
    at = datetime(2030, 5, 1, 12, 30, tzinfo=UTC)
    job_id = await runtime.jobs.enqueue(stamp, key="t", at=at)
    await run_until(runtime, status_is(runtime, job_id, "succeeded"))
    assert job(runtime, job_id).result == at.isoformat()


async def test_failures_are_retried_with_backoff_then_succeed(runtime: Runtime) -> None:
    job_id = await runtime.jobs.enqueue(flaky, key="f", failures=2)
    await run_until(runtime, status_is(runtime, job_id, "succeeded"))
    row = job(runtime, job_id)
    assert (row.attempts, row.result, CALLS["f"]) == (3, 3, 3)
    assert row.last_error is not None
    assert "attempt 2 failed" in row.last_error


async def test_a_job_is_dead_after_its_last_attempt(runtime: Runtime) -> None:
    job_id = await runtime.jobs.enqueue(flaky, key="d", failures=10)
    await run_until(runtime, status_is(runtime, job_id, "dead"))
    row = job(runtime, job_id)
    assert (row.attempts, CALLS["d"]) == (3, 3)
    assert row.last_error is not None
    assert "ConnectionError: attempt 3 failed" in row.last_error
    assert row.finished_at is not None


async def test_a_permanent_error_kills_the_job_without_retries(runtime: Runtime) -> None:
    job_id = await runtime.jobs.enqueue(hopeless, key="p")
    await run_until(runtime, status_is(runtime, job_id, "dead"))
    assert CALLS["p"] == 1
    assert "Permanent" in (job(runtime, job_id).last_error or "")


async def test_retry_later_reschedules_without_spending_attempts(runtime: Runtime) -> None:
    job_id = await runtime.jobs.enqueue(later, key="l")
    await run_until(runtime, status_is(runtime, job_id, "succeeded"))
    assert CALLS["l"] == 3
    assert job(runtime, job_id).result == 1, "two reschedules, one counted attempt"


async def test_an_async_job_over_its_timeout_is_stopped_and_fails(runtime: Runtime) -> None:
    job_id = await runtime.jobs.enqueue(sleepy, seconds=5)
    worker = await run_until(runtime, status_is(runtime, job_id, "dead"), limit_s=3)
    assert "timed out after 0.2s" in (job(runtime, job_id).last_error or "")
    assert worker.settled == 1


async def test_a_sync_job_over_its_timeout_is_rolled_back(runtime: Runtime) -> None:
    job_id = await runtime.jobs.enqueue(slow_write, key="slow", seconds=0.3)
    await run_until(runtime, status_is(runtime, job_id, "dead"))
    assert "timed out" in (job(runtime, job_id).last_error or "")
    assert effect_keys(runtime) == []


async def test_a_dedup_key_enqueues_once(runtime: Runtime) -> None:
    first = await runtime.jobs.enqueue(record, key="x", dedup_key="once")
    second = await runtime.jobs.enqueue(record, key="y", dedup_key="once")
    assert first == second
    assert len(runtime.jobs.store.list()) == 1


async def test_delayed_jobs_wait_for_their_time(runtime: Runtime) -> None:
    soon = await runtime.jobs.enqueue(record, key="soon")
    late = await runtime.jobs.enqueue(record, key="late", delay=timedelta(hours=1))
    await run_until(runtime, status_is(runtime, soon, "succeeded"))
    assert job(runtime, late).status == "queued"
    with pytest.raises(ValueError, match="timezone-aware"):
        record.options(run_at=datetime(2030, 1, 1))


async def test_progress_is_stored_with_the_lease(make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime(jobs={"lease_s": 0.6})  # a heartbeat every 0.2 s
    job_id = await runtime.jobs.enqueue(progressing, key="p", steps=12)
    seen: list[object] = []

    def watch() -> bool:
        row = job(runtime, job_id)
        if row.status == "running" and row.progress:
            seen.append(row.progress)
        return row.status == "succeeded"

    await run_until(runtime, watch)
    assert seen, "progress was visible while the job ran"
    assert all(p["of"] == 12 for p in seen)  # type: ignore[index]


async def test_workers_claim_only_the_versions_they_know(runtime: Runtime) -> None:
    old = await runtime.jobs.enqueue(greet_v1, name="ada")
    new = await runtime.jobs.enqueue(greet_v2, first="ada", last="lovelace")
    assert job(runtime, old).handler == "greet@v1"
    await run_until(runtime, status_is(runtime, new, "succeeded"))
    await run_until(runtime, status_is(runtime, old, "succeeded"))
    assert job(runtime, old).result == "hello ada"
    assert job(runtime, new).result == "hello ada lovelace"
    assert runtime.app.jobs.latest("greet") is not None
    assert runtime.app.jobs.latest("greet").version == 2  # type: ignore[union-attr]


async def test_a_completion_with_a_stale_claim_token_is_refused(runtime: Runtime) -> None:
    job_id = await runtime.jobs.enqueue(record, key="fenced")
    handlers = {"default": runtime.app.jobs.handlers(["default"])}
    (first,) = runtime.jobs.store.claim(handlers, 10, worker="w1", lease_s=0.01)
    await anyio.sleep(0.05)
    assert runtime.jobs.store.reap() == 1
    (second,) = runtime.jobs.store.claim(handlers, 10, worker="w2", lease_s=30)
    assert second.attempt == 2
    assert second.token != first.token
    assert runtime.jobs.store.settle([Outcome(job_id, first.token, "succeeded", "w1")]) == {job_id}
    assert runtime.jobs.store.settle([Outcome(job_id, second.token, "succeeded", "w2")]) == set()
    assert job(runtime, job_id).result == "w2"


async def test_an_expired_last_attempt_is_dead_not_requeued(runtime: Runtime) -> None:
    job_id = await runtime.jobs.enqueue(sleepy, seconds=0)
    handlers = {"default": runtime.app.jobs.handlers(["default"])}
    runtime.jobs.store.claim(handlers, 10, worker="w1", lease_s=0.01)
    await anyio.sleep(0.05)
    assert runtime.jobs.store.reap() == 1
    row = job(runtime, job_id)
    assert row.status == "dead"
    assert "worker lost" in (row.last_error or "")


async def test_operators_retry_dead_jobs_and_cancel_queued_ones(runtime: Runtime) -> None:
    dead = await runtime.jobs.enqueue(hopeless, key="r")
    await run_until(runtime, status_is(runtime, dead, "dead"))
    assert runtime.jobs.store.retry(dead)
    assert job(runtime, dead).status == "queued"
    assert job(runtime, dead).attempts == 0
    assert not runtime.jobs.store.retry(dead), "only dead or cancelled jobs are retried"
    assert runtime.jobs.store.cancel(dead)
    assert job(runtime, dead).status == "cancelled"
    assert not runtime.jobs.store.cancel(dead)


async def test_cancelling_a_running_job_stops_it(make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime(jobs={"lease_s": 0.6})
    job_id = await runtime.jobs.enqueue(progressing, key="c", steps=200)

    def cancel_when_running() -> bool:
        row = job(runtime, job_id)
        if row.status == "running":
            runtime.jobs.store.cancel(job_id)
        return row.status == "cancelled"

    worker = await run_until(runtime, cancel_when_running)
    assert worker.settled == 0
    assert job(runtime, job_id).status == "cancelled"


async def test_shutdown_gives_back_jobs_that_outlive_the_grace_period(
    make_runtime: RuntimeFactory,
) -> None:
    runtime = make_runtime(jobs={"shutdown_grace_s": 0.1})
    job_id = await runtime.jobs.enqueue(progressing, key="g", steps=200)
    await run_until(runtime, status_is(runtime, job_id, "running"))
    row = job(runtime, job_id)
    assert (row.status, row.attempts, row.claim_token) == ("queued", 0, None)


async def test_a_job_claimed_again_by_its_own_worker_runs_once_to_completion(
    make_runtime: RuntimeFactory,
) -> None:
    # Another worker's reaper gives the running job back (its lease looked expired: a
    # stalled heartbeat) and this same worker claims it again: the first run is fenced
    # off and cancelled, the second finishes, and neither disturbs the other's entry.
    runtime = make_runtime(jobs={"lease_s": 0.6})
    GATES["again"] = anyio.Event()
    job_id = await runtime.jobs.enqueue(gated, key="again")
    worker = runtime.jobs.worker()
    async with anyio.create_task_group() as group:
        await group.start(worker.run)
        await eventually(lambda: CALLS.get("again") == 1)
        with runtime.database.transaction() as session:
            session.execute(
                JOBS.update()
                .where(JOBS.c.id == job_id)
                .values(status="queued", claim_token=None, lease_until=None, worker=None)
            )
        await eventually(lambda: CALLS.get("again") == 2)
        GATES["again"].set()
        await eventually(lambda: job(runtime, job_id).status == "succeeded")
        worker.stop()
    row = job(runtime, job_id)
    assert row.result == 2
    assert row.attempts == 2
