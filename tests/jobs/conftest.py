"""Shared fixtures and helpers for job tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
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


ROOT = Path(__file__).resolve().parents[2]


def start_worker(
    database_url: str,
    *args: str,
    app: str = "tests.jobs.apps:app",
    log: Path | None = None,
    **settings: str,
) -> subprocess.Popen[bytes]:
    """``bastion worker APP *args`` as a real process on ``database_url``; ``settings``
    are ``[jobs]`` overrides (``lease_s="1.5"``), ``log`` collects its output."""
    env = {
        **os.environ,
        "BASTION_DATABASE_URL": database_url,
        "BASTION_JOBS_POLL_INTERVAL_S": "0.05",
        "BASTION_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
        **{f"BASTION_JOBS_{key.upper()}": value for key, value in settings.items()},
    }
    command = [sys.executable, "-m", "bastion", "worker", app, *args]
    if log is None:
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    with log.open("wb") as output:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=output)


async def eventually(check: Callable[[], bool], *, limit_s: float = 10) -> None:
    """Wait until ``check()`` holds, looking every 50 ms; fail after ``limit_s``."""
    with anyio.fail_after(limit_s):
        while True:
            if check():
                return
            await anyio.sleep(0.05)


status_is = job_is
