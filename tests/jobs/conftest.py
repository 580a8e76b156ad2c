"""Shared fixtures and helpers for job tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

from bastion import App, Runtime
from bastion.jobs import JobRow, Worker
from tests.jobs.apps import CALLS, app


@pytest.fixture
def bastion_app() -> App:
    return app


@pytest.fixture
def bastion_settings_overrides() -> dict[str, Any]:
    return {"jobs": {"poll_interval_s": 0.05, "lease_s": 3, "shutdown_grace_s": 1}}


@pytest.fixture(autouse=True)
def _fresh_calls() -> None:
    CALLS.clear()


def job(runtime: Runtime, job_id: int) -> JobRow:
    row = runtime.jobs.store.get(job_id)
    assert row is not None, f"job {job_id} does not exist"
    return row


async def run_until(
    runtime: Runtime,
    done: Callable[[], bool | Awaitable[bool]],
    *,
    limit_s: float = 10,
    worker: Worker | None = None,
) -> Worker:
    """Run a worker until ``done()`` holds (checked every 20 ms), then stop it gracefully."""
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


async def eventually(check: Callable[[], bool], *, limit_s: float = 10) -> None:
    """Wait until ``check()`` holds, looking every 50 ms; fail after ``limit_s``."""
    with anyio.fail_after(limit_s):
        while True:
            if check():
                return
            await anyio.sleep(0.05)


def status_is(runtime: Runtime, job_id: int, *statuses: str) -> Callable[[], bool]:
    return lambda: job(runtime, job_id).status in statuses
