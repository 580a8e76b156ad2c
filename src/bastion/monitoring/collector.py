"""Metrics that are facts of the database, read at scrape time.

Jobs by queue and status, the queue lag and workflows by status are the same for every
process and machine, so counting them in processes would be wrong the moment there is
more than one; a query per scrape is right for any number of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import column, func, select, table

from bastion.db.database import Database
from bastion.jobs.tables import JobRow
from bastion.observability.logs import get_logger

# The workflows package is a sibling layer; its table is read by name.
_WORKFLOWS = table("bastion_workflows", column("status"))


class DatabaseCollector(Collector):
    """``bastion_jobs{queue,status}``, ``bastion_job_queue_lag_seconds{queue}`` (age of the
    oldest due queued job, 0 when none is waiting) and ``bastion_workflows{status}``.

    With the database unreachable the families are left out of the scrape (and a warning
    logged) rather than failing it: the process's own metrics are still worth having.
    """

    def __init__(self, database: Database) -> None:
        self.database = database
        self.log = get_logger("bastion.metrics")

    def describe(self) -> list[Metric]:
        # Described up front so the registry never runs the queries at registration.
        return []

    def collect(self) -> Iterator[Metric]:
        now = datetime.now(UTC)
        try:
            with self.database.read_transaction() as session:
                jobs = session.execute(
                    select(JobRow.queue, JobRow.status, func.count()).group_by(
                        JobRow.queue, JobRow.status
                    )
                ).all()
                oldest = session.execute(
                    select(JobRow.queue, func.min(JobRow.run_at))
                    .where(JobRow.status == "queued", JobRow.run_at <= now)
                    .group_by(JobRow.queue)
                ).all()
                workflows = session.execute(
                    select(_WORKFLOWS.c.status, func.count()).group_by(_WORKFLOWS.c.status)
                ).all()
        except Exception as exc:
            self.log.warning("metrics_database_unavailable", error=f"{type(exc).__name__}: {exc}")
            return
        by_status = GaugeMetricFamily(
            "bastion_jobs", "Jobs in the database by queue and status.", labels=["queue", "status"]
        )
        for queue, status, count in jobs:
            by_status.add_metric([queue, status], count)
        yield by_status
        lag = GaugeMetricFamily(
            "bastion_job_queue_lag_seconds",
            "Age of the oldest queued job that is due (0: none waiting).",
            labels=["queue"],
        )
        waiting = {queue: run_at for queue, run_at in oldest if run_at is not None}
        for queue in sorted({row[0] for row in jobs} | set(waiting)):
            due = waiting.get(queue)
            lag.add_metric([queue], max(0.0, (now - due).total_seconds()) if due else 0.0)
        yield lag
        flows = GaugeMetricFamily(
            "bastion_workflows", "Workflows in the database by status.", labels=["status"]
        )
        for status, count in workflows:
            flows.add_metric([status], count)
        yield flows
