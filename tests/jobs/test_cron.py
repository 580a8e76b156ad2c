"""Cron: one enqueue per tick across processes, catch-up after downtime."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from sqlalchemy import func, select

from bastion import App, Context, Runtime
from bastion.jobs import CronFireRow, JobRow
from bastion.jobs.cron import Scheduler
from tests.jobs.conftest import run_until
from tests.jobs.cron_app import app

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def bastion_app() -> App:
    return app


def scheduler(runtime: Runtime, name: str = "minutely") -> Scheduler:
    return Scheduler(runtime.database, [runtime.app.jobs.schedules[name]], grace_s=60)


def fires(runtime: Runtime, name: str) -> list[datetime]:
    with runtime.database.read_transaction() as session:
        return list(
            session.scalars(
                select(CronFireRow.fire_time)
                .where(CronFireRow.schedule == name)
                .order_by(CronFireRow.fire_time)
            )
        )


def jobs_named(runtime: Runtime, name: str) -> int:
    with runtime.database.read_transaction() as session:
        count = session.scalar(select(func.count()).select_from(JobRow).where(JobRow.name == name))
    return int(count or 0)


async def test_a_tick_fires_once_and_not_before_it_is_due(runtime: Runtime) -> None:
    clock = scheduler(runtime)
    assert clock.tick(START + timedelta(seconds=30)) == [("minutely", START)]
    assert clock.tick(START + timedelta(seconds=59)) == []
    assert clock.tick(START + timedelta(minutes=1)) == [("minutely", START + timedelta(minutes=1))]
    assert jobs_named(runtime, "minutely") == 2


async def test_skip_drops_ticks_missed_while_nothing_ran(runtime: Runtime) -> None:
    clock = scheduler(runtime)
    clock.tick(START)
    back = START + timedelta(hours=3, seconds=30)
    assert clock.tick(back) == [("minutely", START + timedelta(hours=3))], "the tick on time"
    assert fires(runtime, "minutely") == [START, START + timedelta(hours=3)], "179 skipped"


async def test_once_runs_missed_ticks_once(runtime: Runtime) -> None:
    clock = scheduler(runtime, "nightly")
    night = datetime(2030, 1, 1, 2, tzinfo=UTC)
    assert clock.tick(night) == [("nightly", night)]
    three_days_later = night + timedelta(days=3, hours=5)
    assert clock.tick(three_days_later) == [("nightly", night + timedelta(days=3))]
    assert clock.tick(three_days_later + timedelta(hours=1)) == []
    assert fires(runtime, "nightly") == [night, night + timedelta(days=3)]


async def test_first_start_does_not_replay_the_past(runtime: Runtime) -> None:
    clock = scheduler(runtime, "nightly")
    assert clock.tick(datetime(2030, 1, 1, 9, tzinfo=UTC)) == []


def test_declarations_are_checked() -> None:
    local = App("cronchecks")
    with pytest.raises(ValueError, match="five-field cron expression"):
        local.cron("every minute")(lambda ctx: None)
    with pytest.raises(ValueError, match="five-field"):
        local.cron("* * * * * *")(lambda ctx: None)

    def with_args(ctx: Context, n: int) -> None:
        return None

    with pytest.raises(TypeError, match="takes only ctx"):
        local.cron("* * * * *")(with_args)


@pytest.mark.slow
async def test_three_processes_fire_sixty_ticks_exactly_sixty_times(
    runtime: Runtime, bastion_database_url: str
) -> None:
    """Three processes race over the same 60 simulated minutes (a fake clock each)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BASTION_LOG_LEVEL": "WARNING"}
    command = [
        sys.executable,
        "-m",
        "tests.jobs.cron_ticker",
        bastion_database_url,
        START.isoformat(),
        "60",
    ]
    processes = [
        await anyio.open_process(command, cwd=ROOT, env=env, stdout=None, stderr=None)
        for _ in range(3)
    ]
    with anyio.fail_after(60):
        assert [await p.wait() for p in processes] == [0, 0, 0]
    assert fires(runtime, "minutely") == [START + timedelta(minutes=m) for m in range(60)]
    assert jobs_named(runtime, "minutely") == 60


async def test_a_running_worker_fires_due_ticks_and_runs_them(runtime: Runtime) -> None:
    def ran() -> bool:
        with runtime.database.read_transaction() as session:
            return bool(
                session.scalar(
                    select(func.count())
                    .select_from(JobRow)
                    .where(JobRow.name == "minutely", JobRow.status == "succeeded")
                )
            )

    await run_until(runtime, ran)
    assert len(fires(runtime, "minutely")) == 1
