"""Real ``bastion run`` server processes for multi-process tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bastion.testing import free_port

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 30.0


def shop_env(database_url: str, **settings: str) -> dict[str, str]:
    """The environment of a shop server on ``database_url`` (migrated, no demo data, fast
    password hashing), without this process's own ``BASTION_``/``SHOP_`` settings, plus
    ``settings`` (``BASTION_...`` names)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("BASTION_", "PYTEST_", "SHOP_"))
    }
    env.update(
        BASTION_APP="examples.shop.app:app",
        BASTION_ENV="development",
        BASTION_DATABASE_URL=database_url,
        BASTION_DATABASE_AUTO_MIGRATE="false",
        BASTION_SHOP_SEED_DEMO_DATA="false",
        BASTION_AUTH_ARGON2_MEMORY_KIB="8192",
        BASTION_AUTH_ARGON2_TIME_COST="1",
        BASTION_AUTH_ARGON2_PARALLELISM="1",
    )
    env.update(settings)
    return env


@contextmanager
def bastion_server(env: dict[str, str], log: Path) -> Iterator[str]:
    """``bastion run`` on a free port; stopped (killed if need be) on the way out."""
    for attempt in range(3):
        port = free_port()
        command = [sys.executable, "-m", "bastion.cli", "run", "--host", "127.0.0.1"]
        with log.open("w") as output:
            process = subprocess.Popen(
                [*command, "--port", str(port)],
                cwd=ROOT,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            url = f"http://127.0.0.1:{port}"
            if _wait_until_live(process, url, log):
                yield url
                return
            if attempt == 2:
                raise AssertionError(f"could not start on a free port:\n{log.read_text()}")
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _wait_until_live(process: subprocess.Popen[bytes], url: str, log: Path) -> bool:
    """Whether the server answered; ``False`` when another process took its port."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                if "address already in use" in log.read_text().lower():
                    return False
                raise AssertionError(f"the server exited early:\n{log.read_text()}")
            try:
                if client.get(f"{url}/health/live").status_code == 200:
                    return True
            except httpx.TransportError:
                time.sleep(0.05)
    raise AssertionError(f"{url} did not answer within {STARTUP_TIMEOUT_S}s:\n{log.read_text()}")
