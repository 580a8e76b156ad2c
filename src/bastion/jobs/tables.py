"""The tables of durable execution: jobs, queue state and cron fire records.

They live in the app's own database (decision 0006), so a mutation's writes and the
jobs it enqueues commit together.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bastion.db.tables import PlatformBase, utcnow
from bastion.db.types import UTCDateTime

#: SQLite only auto-increments an ``INTEGER PRIMARY KEY``; PostgreSQL gets 64 bits.
JobId = BigInteger().with_variant(Integer(), "sqlite")


class JobRow(PlatformBase):
    """One unit of background work and its whole life: queued, running, finished.

    ``handler`` is ``name@vN``: a worker claims only handlers it has, so a deploy that
    changes a job's arguments (a new version) never hands old rows to new code.
    ``claim_token`` fences completion: a worker whose lease ran out, and whose job
    was claimed again, cannot complete it.
    """

    __tablename__ = "bastion_jobs"

    id: Mapped[int] = mapped_column(JobId, primary_key=True, autoincrement=True)
    queue: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    handler: Mapped[str] = mapped_column(String(220))
    args: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    run_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    timeout_s: Mapped[float | None] = mapped_column(Float)
    dedup_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    claim_token: Mapped[str | None] = mapped_column(String(32))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    worker: Mapped[str | None] = mapped_column(String(128))
    progress: Mapped[Any] = mapped_column(JSON, nullable=True)
    result: Mapped[Any] = mapped_column(JSON, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(String(128))
    #: W3C ``traceparent`` of the span that enqueued the job: its run continues the trace.
    trace_context: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        # The claim query: queued rows of some queues, due, most urgent first.
        Index("ix_bastion_jobs_claim", "status", "queue", "priority", "run_at"),
        # The reaper: running rows whose lease ran out.
        Index("ix_bastion_jobs_lease", "status", "lease_until"),
        Index("ix_bastion_jobs_name", "name"),
    )


class QueueRow(PlatformBase):
    """A queue's shared token bucket, so a rate limit holds across worker processes."""

    __tablename__ = "bastion_job_queues"

    queue: Mapped[str] = mapped_column(String(64), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    refilled_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CronFireRow(PlatformBase):
    """One tick of one schedule; its primary key makes the tick fire once in all processes."""

    __tablename__ = "bastion_cron_fires"

    schedule: Mapped[str] = mapped_column(String(200), primary_key=True)
    fire_time: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    job_id: Mapped[int | None] = mapped_column(JobId)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
