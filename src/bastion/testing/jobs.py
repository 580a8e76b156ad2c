"""Drive jobs and workflows from tests: run a real worker until a condition holds."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from bastion.app import Runtime
from bastion.jobs import JobRow, Worker
from bastion.workflows import Timeline


async def run_worker_until(
    runtime: Runtime,
    done: Callable[[], bool | Awaitable[bool]],
    *,
    limit_s: float = 10,
    worker: Worker | None = None,
) -> Worker:
    """Run a worker of ``runtime`` until ``done()`` holds (checked every 20 ms), then stop
    it gracefully and return it (``worker.settled`` counts what it finished).

    Raises:
        TimeoutError: ``done()`` did not hold within ``limit_s``.
    """
    worker = worker or runtime.jobs.worker()
    async with anyio.create_task_group() as group:
        await group.start(worker.run)
        with anyio.fail_after(limit_s):
            while True:
                outcome = done()
                if not isinstance(outcome, bool):
                    outcome = await outcome
                if outcome:
                    break
                await anyio.sleep(0.02)
        worker.stop()
    return worker


def job_row(runtime: Runtime, job_id: int) -> JobRow:
    """The job's row as it is now; fails the test when there is none."""
    row = runtime.jobs.store.get(job_id)
    if row is None:
        raise AssertionError(f"job {job_id} does not exist")
    return row


def job_is(runtime: Runtime, job_id: int, *statuses: str) -> Callable[[], bool]:
    """A condition for :func:`run_worker_until`: the job reached one of ``statuses``."""
    return lambda: job_row(runtime, job_id).status in statuses


def workflow_timeline(runtime: Runtime, workflow_id: str) -> Timeline:
    """The workflow's row and steps in order (compensations last); fails when unknown."""
    timeline = runtime.workflows.get(workflow_id)
    if timeline is None:
        raise AssertionError(f"workflow {workflow_id} does not exist")
    return timeline


def workflow_is(runtime: Runtime, workflow_id: str, *statuses: str) -> Callable[[], bool]:
    """A condition for :func:`run_worker_until`: the workflow reached one of ``statuses``."""
    return lambda: workflow_timeline(runtime, workflow_id).workflow.status in statuses
