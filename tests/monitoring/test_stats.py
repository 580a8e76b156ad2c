"""Per-minute request statistics: counted in memory, flushed as rows, read back summed
over processes, kept while the database is down, purged by housekeeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import func, select

from bastion import App, Runtime
from bastion.db.database import Database
from bastion.monitoring import (
    RequestStats,
    TrafficMinute,
    job_throughput,
    totals,
    traffic,
)
from bastion.monitoring.stats import MAX_PENDING_MINUTES, percentile
from bastion.monitoring.tables import RequestStatsRow
from bastion.observability.metrics import LATENCY_BUCKETS_S
from bastion.settings.sections import DatabaseSection
from bastion.testing import BastionClient, job_is, run_worker_until
from tests.observability.apps import ATTEMPTS, app

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def bastion_app() -> App:
    return app


@pytest.fixture
def bastion_settings_overrides() -> dict[str, Any]:
    return {"jobs": {"poll_interval_s": 0.05}, "metrics": {"stats_flush_s": 0.05}}


def record_minute(stats: RequestStats, at: datetime) -> None:
    """Ten requests: eight fast 200s, a 404 at 200 ms and a 500 at 3 s."""
    for _ in range(8):
        stats.record("/api/v1/items/{item_id}", "GET", 200, 0.003, at=at)
    stats.record("/api/v1/items/{item_id}", "GET", 404, 0.2, at=at)
    stats.record("/api/v1/boom", "GET", 500, 3.0, at=at)


def stored_rows(runtime: Runtime) -> int:
    with runtime.database.read_transaction() as session:
        return int(session.scalar(select(func.count()).select_from(RequestStatsRow)) or 0)


async def test_recorded_requests_are_flushed_and_read_back_per_minute(runtime: Runtime) -> None:
    stats = RequestStats("p1")
    record_minute(stats, T0 + timedelta(seconds=5))
    stats.record("/api/v1/items/{item_id}", "GET", 200, 0.003, at=T0 + timedelta(minutes=1))
    assert stats.flush(runtime.database) == 3  # (minute, route, method) keys
    assert stats.pending == 0
    assert stats.flush(runtime.database) == 0

    with runtime.database.read_transaction() as session:
        minutes = traffic(session, T0)
        window = totals(session, T0, T0 + timedelta(minutes=1))
        one_route = totals(session, T0, route="/api/v1/boom")
        later = traffic(session, T0 + timedelta(minutes=5))
    first = minutes[0]
    assert [m.minute for m in minutes] == [T0, T0 + timedelta(minutes=1)]
    assert (first.requests, first.errors, first.client_errors) == (10, 1, 1)
    # p50: rank 5 of the 8 requests in the first bucket (0..5 ms), interpolated.
    assert first.p50_ms == pytest.approx(5 * 5 / 8)
    # p95: rank 9.5 falls in the 2.5..5 s bucket, which holds one request.
    assert first.p95_ms == pytest.approx(3750)
    assert minutes[1] == TrafficMinute(T0 + timedelta(minutes=1), 1, 0, 0, 2.5, 4.75)
    # p95 of the window: rank 10.45 of 11, in the 2.5..5 s bucket again.
    assert (window.requests, window.errors, window.client_errors) == (11, 1, 1)
    assert window.error_rate == pytest.approx(1 / 11)
    assert window.p50_ms == pytest.approx(5 * 5.5 / 9)
    assert window.p95_ms == pytest.approx(3625)
    assert (one_route.requests, one_route.errors, one_route.error_rate) == (1, 1, 1.0)
    assert later == []


async def test_two_processes_rows_are_summed(runtime: Runtime) -> None:
    first, second = RequestStats("p1"), RequestStats("p2")
    record_minute(first, T0)
    record_minute(second, T0)
    first.flush(runtime.database)
    second.flush(runtime.database)
    with runtime.database.read_transaction() as session:
        (minute,) = traffic(session, T0)
        processes = set(session.scalars(select(RequestStatsRow.process)))
    assert processes == {"p1", "p2"}
    assert (minute.requests, minute.errors, minute.client_errors) == (20, 2, 2)
    assert minute.p50_ms == pytest.approx(5 * 10 / 16)


def test_percentiles_stay_inside_the_bucket_of_the_true_value() -> None:
    empty = [0] * (len(LATENCY_BUCKETS_S) + 1)
    assert percentile(empty, 0.5) is None
    beyond = [*empty[:-1], 3]  # every request slower than the last bound
    assert percentile(beyond, 0.95) == LATENCY_BUCKETS_S[-1] * 1000
    one = list(empty)
    one[4] = 1  # one request between 50 and 100 ms
    assert 50 < (percentile(one, 0.5) or 0) <= 100


async def test_a_failed_flush_keeps_the_counts_for_the_next(runtime: Runtime) -> None:
    down = Database(DatabaseSection(url="postgresql://nobody@127.0.0.1:1/none"))
    stats = RequestStats("p1")
    record_minute(stats, T0)
    with pytest.raises(Exception, match=r"connect|refused|Connection"):
        stats.flush(down)
    stats.record("/api/v1/boom", "GET", 500, 0.01, at=T0)  # counted meanwhile
    assert stats.pending == 11
    assert stats.flush(runtime.database) == 2
    with runtime.database.read_transaction() as session:
        window = totals(session, T0)
    assert (window.requests, window.errors) == (11, 2)
    down.dispose()


async def test_an_outage_keeps_only_the_latest_minutes(runtime: Runtime) -> None:
    down = Database(DatabaseSection(url="postgresql://nobody@127.0.0.1:1/none"))
    stats = RequestStats("p1")
    for minute in range(MAX_PENDING_MINUTES + 5):
        stats.record("/r", "GET", 200, 0.01, at=T0 + timedelta(minutes=minute))
    with pytest.raises(Exception, match=r"connect|refused|Connection"):
        stats.flush(down)
    assert stats.pending == MAX_PENDING_MINUTES
    stats.flush(runtime.database)
    with runtime.database.read_transaction() as session:
        kept = traffic(session, T0)
    assert kept[0].minute == T0 + timedelta(minutes=5)
    down.dispose()


async def test_the_server_flushes_requests_in_the_background(
    live_url: str, runtime: Runtime
) -> None:
    async with httpx.AsyncClient(base_url=live_url) as http:
        for _ in range(3):
            assert (await http.get("/api/v1/items/7")).status_code == 200
    since = datetime.now(UTC) - timedelta(minutes=5)
    flushed = 0
    with anyio.fail_after(10):
        # Polled: the flush runs on its own schedule (every 50 ms here).
        for _ in iter(int, 1):
            with runtime.database.read_transaction() as session:
                flushed = totals(session, since).requests
            if flushed == 3:
                break
            await anyio.sleep(0.05)
    assert flushed == 3


async def test_shutdown_flushes_what_is_left(make_runtime: Any) -> None:
    runtime = make_runtime()
    async with BastionClient(runtime.asgi()) as client:
        assert (await client.get("/api/v1/items/1")).status_code == 200
        assert (await client.get("/nowhere")).status_code == 404
    await runtime.shutdown()
    reader = make_runtime()
    with reader.database.read_transaction() as session:
        rows = session.execute(select(RequestStatsRow.route, RequestStatsRow.requests))
        routes = {route: requests for route, requests in rows}
    assert routes == {"/api/v1/items/{item_id}": 1, "<unmatched>": 1}


async def test_housekeeping_purges_old_statistics(runtime: Runtime) -> None:
    now = datetime.now(UTC)
    stats = RequestStats("p1")
    stats.record("/r", "GET", 200, 0.01, at=now - timedelta(days=8))
    stats.record("/r", "GET", 200, 0.01, at=now)
    stats.flush(runtime.database)
    purged = await anyio.to_thread.run_sync(runtime.housekeep)
    assert purged["request_stats"] == 1
    assert stored_rows(runtime) == 1


async def test_job_throughput_counts_finished_jobs_per_minute(
    client: BastionClient, runtime: Runtime
) -> None:
    started = datetime.now(UTC)
    ATTEMPTS.clear()
    ids = (await client.post("/api/v1/jobs")).json()
    await run_worker_until(
        runtime,
        lambda: (
            all(job_is(runtime, ids[name], "succeeded")() for name in ("fine", "flaky", "patient"))
            and job_is(runtime, ids["doomed"], "dead")()
        ),
    )
    with runtime.database.read_transaction() as session:
        rows = job_throughput(session, started - timedelta(minutes=1))
        none = job_throughput(session, started + timedelta(minutes=5))
    # Counted once each when they finished, whatever their attempts before.
    assert sum(ok for _, ok, _ in rows) == 3
    assert sum(failed for _, _, failed in rows) == 1
    assert none == []
