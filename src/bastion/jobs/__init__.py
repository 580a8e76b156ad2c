"""Durable background jobs in the app's own database (decision 0006).

Declare with ``@app.job``, enqueue inside a mutation (``job.enqueue(ctx, ...)``) or
anywhere (``await runtime.jobs.enqueue(job, ...)``), and run workers with
``bastion worker`` or ``bastion run --embedded-worker``.
"""

from __future__ import annotations

from bastion.jobs.handle import BoundJob, Job
from bastion.jobs.service import Jobs
from bastion.jobs.spec import JobRegistry, JobSpec, QueueSpec, Retry, declare_job
from bastion.jobs.store import Claimed, JobStatus, JobStore, Outcome
from bastion.jobs.tables import CronFireRow, JobRow, QueueRow
from bastion.jobs.worker import JobTimedOut, RetryLater, Worker

__all__ = [
    "BoundJob",
    "Claimed",
    "CronFireRow",
    "Job",
    "JobRegistry",
    "JobRow",
    "JobSpec",
    "JobStatus",
    "JobStore",
    "JobTimedOut",
    "Jobs",
    "Outcome",
    "QueueRow",
    "QueueSpec",
    "Retry",
    "RetryLater",
    "Worker",
    "declare_job",
]
