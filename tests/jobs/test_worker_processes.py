"""Worker processes: queue limits hold across processes, SIGTERM drains gracefully."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from bastion import Runtime
from bastion.jobs import JobRow
from bastion.jobs.store import enqueue_many
from tests.jobs.apps import Effect, hold, metered, progressing
from tests.jobs.conftest import eventually, job, start_worker, status_is

pytestmark = pytest.mark.slow


def marks(runtime: Runtime) -> list[tuple[float, float]]:
    with runtime.database.read_transaction() as session:
        rows = session.execute(
            select(Effect.started, Effect.ended).where(Effect.started.is_not(None))
        ).all()
    return sorted((float(r[0]), float(r[1])) for r in rows)


async def wait_for_marks(
    runtime: Runtime, count: int, processes: list[subprocess.Popen[bytes]]
) -> None:
    try:
        await eventually(lambda: len(marks(runtime)) >= count, limit_s=30)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)


async def test_a_queue_concurrency_limit_holds_across_two_processes(
    runtime: Runtime, bastion_database_url: str
) -> None:
    with runtime.database.transaction() as session:
        enqueue_many(session, hold.spec, [{"key": f"h{i}", "seconds": 0.3} for i in range(8)])
    workers = [
        start_worker(bastion_database_url, "--queue", "limited", "--concurrency", "4") for _ in "ab"
    ]
    await wait_for_marks(runtime, 8, workers)
    spans = marks(runtime)
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, change in edges:
        running += change
        peak = max(peak, running)
    assert peak == 2, f"at most 2 jobs of the queue ran at once, and 2 did (saw {peak})"


async def test_a_queue_rate_limit_holds_across_two_processes(
    runtime: Runtime, bastion_database_url: str
) -> None:
    with runtime.database.transaction() as session:
        enqueue_many(session, metered.spec, [{"key": f"m{i}"} for i in range(15)])
    workers = [start_worker(bastion_database_url, "--queue", "metered") for _ in "ab"]
    await wait_for_marks(runtime, 15, workers)
    # The bucket governs claims; a job may begin running a moment after its claim, so
    # its own start time could make two claims look closer than they were.
    with runtime.database.read_transaction() as session:
        claimed = session.scalars(
            select(JobRow.started_at).where(JobRow.queue == "metered").order_by(JobRow.started_at)
        ).all()
    starts = [moment.timestamp() for moment in claimed if moment is not None]
    assert len(starts) == 15
    # A bucket of 5 refilled at 5/s: n starts need at least (n - 5) / 5 seconds.
    for i in range(len(starts)):
        for j in range(i + 5, len(starts)):
            needed = (j - i + 1 - 5) / 5
            assert starts[j] - starts[i] >= needed - 0.05, (i, j, starts[j] - starts[i])
    assert starts[-1] - starts[0] >= 1.9


async def test_sigterm_stops_claiming_and_gives_back_unfinished_jobs(
    runtime: Runtime, bastion_database_url: str, tmp_path: Path
) -> None:
    job_id = await runtime.jobs.enqueue(progressing, key="long", steps=400)
    log = tmp_path / "worker.log"
    worker = start_worker(bastion_database_url, log=log, shutdown_grace_s="0.5")
    await eventually(status_is(runtime, job_id, "running"), limit_s=15)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(10) == 0
    row = job(runtime, job_id)
    assert (row.status, row.attempts, row.claim_token) == ("queued", 0, None)
    assert "giving jobs back" in log.read_text()
