"""Shared fixtures and helpers for job tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

from bastion import App
from bastion.testing import job_is, job_row, run_worker_until
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


#: The kit's helpers under the short names these tests use.
job = job_row
run_until = run_worker_until


async def eventually(check: Callable[[], bool], *, limit_s: float = 10) -> None:
    """Wait until ``check()`` holds, looking every 50 ms; fail after ``limit_s``."""
    with anyio.fail_after(limit_s):
        while True:
            if check():
                return
            await anyio.sleep(0.05)


status_is = job_is
