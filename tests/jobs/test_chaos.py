"""Chaos: worker processes killed with SIGKILL every second lose no job and repeat no effect.

Each job inserts one row keyed by its own key in the same transaction that marks
it succeeded, so after the storm every job must be ``succeeded`` and the effects
table must hold exactly one row per job.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import anyio
import pytest
from sqlalchemy import func, select

from bastion import Runtime
from bastion.jobs import JobRow
from bastion.jobs.store import enqueue_many
from tests.jobs.apps import Effect, record
from tests.jobs.conftest import ROOT, start_worker
from tests.support.processes import alone_among_test_runs

JOBS = 2000


def start_chaos_worker(database_url: str) -> subprocess.Popen[bytes]:
    return start_worker(database_url, lease_s="1.5", poll_interval_s="0.1", concurrency="8")


def tally(runtime: Runtime) -> tuple[int, int, int, int]:
    """(succeeded jobs, effects, distinct effect keys, jobs that needed a second attempt)."""
    with runtime.database.read_transaction() as session:
        succeeded = session.scalar(
            select(func.count()).select_from(JobRow).where(JobRow.status == "succeeded")
        )
        effects = session.scalar(select(func.count()).select_from(Effect))
        distinct = session.scalar(select(func.count(func.distinct(Effect.key))))
        retried = session.scalar(
            select(func.count()).select_from(JobRow).where(JobRow.attempts > 1)
        )
    return int(succeeded or 0), int(effects or 0), int(distinct or 0), int(retried or 0)


@pytest.fixture
def alone() -> Iterator[None]:
    with alone_among_test_runs("chaos"):
        yield


@pytest.mark.slow
async def test_killing_workers_every_second_loses_nothing_and_repeats_nothing(
    alone: None, runtime: Runtime, bastion_database_url: str
) -> None:
    with runtime.database.transaction() as session:
        enqueue_many(session, record.spec, [{"key": f"job-{i}"} for i in range(JOBS)])
    # A worker killed before it could start proves nothing: each lives for as long as a
    # start takes on this machine (imports alone take seconds on a loaded one), plus one.
    started = time.monotonic()
    probe = [sys.executable, "-c", "import bastion.cli.main, tests.jobs.apps"]
    await anyio.run_process(probe, cwd=ROOT)
    least_life_s = time.monotonic() - started + 1.0
    workers = [start_chaos_worker(bastion_database_url), start_chaos_worker(bastion_database_url)]
    born = {id(w): time.monotonic() for w in workers}
    kills = 0
    try:
        with anyio.fail_after(180):
            while tally(runtime)[0] < JOBS:
                await anyio.sleep(1.0)
                victim = workers[0]
                if time.monotonic() - born[id(victim)] < least_life_s:
                    continue
                workers.pop(0)
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                kills += 1
                workers.append(start_chaos_worker(bastion_database_url))
                born[id(workers[-1])] = time.monotonic()
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
    succeeded, effects, distinct, retried = tally(runtime)
    assert kills >= 2, "the storm lasted long enough to kill workers mid-run"
    assert (succeeded, effects, distinct) == (JOBS, JOBS, JOBS)
    assert retried > 0, "some jobs were claimed by a killed worker and taken over"
