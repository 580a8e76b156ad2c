"""Housekeeping: a scheduled platform job purges old jobs, cron records and expired state."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from bastion import App, Context, Runtime
from bastion.db.tables import utcnow
from bastion.jobs import CronFireRow, JobRow
from tests.jobs.conftest import job, run_until, status_is

app = App("housekeeping")
housekeeping = app.use_housekeeping()


@app.job()
def noop(ctx: Context) -> None:
    return None


@pytest.fixture
def bastion_app() -> App:
    return app


@pytest.fixture
def bastion_settings_overrides() -> dict[str, Any]:
    return {"jobs": {"poll_interval_s": 0.05, "retention_s": 3600}}


async def test_old_finished_jobs_and_cron_records_are_purged(runtime: Runtime) -> None:
    old, recent, waiting = [await runtime.jobs.enqueue(noop) for _ in range(3)]
    long_ago = utcnow() - timedelta(hours=2)
    with runtime.database.transaction() as session:
        session.execute(
            update(JobRow)
            .where(JobRow.id.in_([old, recent]))
            .values(status="succeeded", finished_at=utcnow())
        )
        session.execute(update(JobRow).where(JobRow.id == old).values(finished_at=long_ago))
        session.add(CronFireRow(schedule="x", fire_time=long_ago))
        session.add(CronFireRow(schedule="x", fire_time=utcnow()))
    purged = runtime.housekeep()
    assert purged["jobs"] == 1
    assert purged["cron_fires"] == 1
    assert set(purged) == {
        "sessions",
        "refresh_tokens",
        "idempotency_keys",
        "jobs",
        "cron_fires",
        "errors",
        "request_stats",
    }
    assert runtime.jobs.store.get(old) is None
    assert job(runtime, recent).status == "succeeded"
    assert job(runtime, waiting).status == "queued", "unfinished jobs are never purged"


async def test_housekeeping_is_a_scheduled_job_that_reports_its_counts(runtime: Runtime) -> None:
    assert app.jobs.schedules["bastion.housekeeping"].expression == "17 * * * *"
    job_id = await runtime.jobs.enqueue(housekeeping)
    await run_until(runtime, status_is(runtime, job_id, "succeeded"))
    assert job(runtime, job_id).result["jobs"] == 0
