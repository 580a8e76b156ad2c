"""``bastion run`` and ``bastion dev`` as real processes on a loopback port.

Each server is a subprocess whose JSON log lines (the test project logs JSON) are
read by a thread, so a test can wait for a given event instead of sleeping.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from bastion.testing import free_port
from tests.cli.conftest import copy_project

STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


class Server:
    """A ``bastion`` server subprocess and the log lines it has written."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bastion.cli", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []
        self.ended = False
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def collect(self, wait: float = 0.0) -> None:
        """Take the lines written so far, waiting up to ``wait`` seconds for the first."""
        try:
            line = self._lines.get(timeout=wait) if wait > 0 else self._lines.get_nowait()
            while True:
                if line is None:
                    self.ended = True
                else:
                    self.output.append(line)
                line = self._lines.get_nowait()
        except queue.Empty:
            pass

    def events(self) -> list[dict[str, Any]]:
        found = []
        for line in self.output:
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return found

    def count(self, event: str) -> int:
        return sum(1 for record in self.events() if record.get("event") == event)

    def saw(self, event: str) -> bool:
        return self.count(event) > 0

    def wait_for(self, event: str, timeout: float, *, times: int = 1) -> None:
        """Wait until the server has logged ``event`` ``times`` times."""
        deadline = time.monotonic() + timeout
        while self.count(event) < times:
            if self.ended:
                raise AssertionError(f"the server exited before logging {event!r}:\n{self.log()}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {times} x {event!r} within {timeout}s:\n{self.log()}")
            self.collect(wait=min(remaining, 0.2))

    def wait_exit(self, timeout: float) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=timeout)
        self.collect()
        return code

    def log(self) -> str:
        return "".join(self.output)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_S)
        self._reader.join(timeout=STOP_TIMEOUT_S)
        if self.process.stdout is not None:
            self.process.stdout.close()


class PortTaken(Exception):
    """Another process took the free port between choosing it and binding it."""


def wait_until_live(server: Server, url: str, timeout: float = STARTUP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                server.wait_exit(timeout=STOP_TIMEOUT_S)
                if "address already in use" in server.log().lower():
                    raise PortTaken()
                raise AssertionError(
                    f"the server exited with {server.process.returncode}:\n{server.log()}"
                )
            try:
                if client.get(f"{url}/health/live").status_code == 200:
                    return
            except httpx.TransportError:
                server.collect(wait=0.1)  # not listening yet: wait on its log instead of sleeping
    raise AssertionError(f"{url}/health/live did not answer within {timeout}s:\n{server.log()}")


@contextmanager
def serving(
    command: str, folder: Path, *extra: str, env: dict[str, str] | None = None
) -> Iterator[tuple[Server, str]]:
    """Start ``bastion <command>`` on a free port and wait until it answers."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("BASTION_", "PYTEST_"))}
    clean.update(env or {})
    for attempt in range(3):
        port = free_port()
        server = Server([command, "--port", str(port), *extra], folder, clean)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_live(server, url)
        except PortTaken:
            server.stop()
            if attempt == 2:
                raise
            continue
        except BaseException:
            server.stop()
            raise
        try:
            yield server, url
        finally:
            server.stop()
        return


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return copy_project(tmp_path / "project")


def test_run_serves_and_stops_gracefully_on_sigterm(folder: Path) -> None:
    with serving("run", folder) as (server, url):
        outcome: dict[str, Any] = {}

        def call_slow_action() -> None:
            try:
                outcome["response"] = httpx.post(f"{url}/api/v1/slow", timeout=STOP_TIMEOUT_S)
            except Exception as exc:  # reported by the assertion below
                outcome["error"] = exc

        caller = threading.Thread(target=call_slow_action)
        caller.start()
        server.wait_for("slow_started", timeout=STOP_TIMEOUT_S)

        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        caller.join(timeout=STOP_TIMEOUT_S)
        code = server.wait_exit(timeout=STOP_TIMEOUT_S)
        stopped_after = time.monotonic() - signalled

        assert not caller.is_alive()
        assert "error" not in outcome, outcome
        response = outcome["response"]
        assert response.status_code == 200, server.log()
        assert response.json() == {"status": "done"}
        assert code == 0, server.log()
        assert stopped_after < 10
        # The lifespan shutdown ran: the runtime closed its pools and said so.
        assert server.saw("stopped"), server.log()


def test_run_logs_and_headers(folder: Path) -> None:
    with serving("run", folder) as (server, url):
        response = httpx.get(f"{url}/health/live", headers={"X-Forwarded-For": "203.0.113.9"})
        server.process.send_signal(signal.SIGTERM)
        assert server.wait_exit(timeout=STOP_TIMEOUT_S) == 0

    assert "server" not in response.headers
    serving_line = next(record for record in server.events() if record.get("event") == "serving")
    assert serving_line["app"] == "cliapp.app:app"
    assert serving_line["workers"] == 1
    access = [record for record in server.events() if record.get("event") == "request"]
    assert access, server.log()
    # Forwarded headers are not trusted: the client is the real peer.
    assert access[0]["client"] == "127.0.0.1"
    # uvicorn's own access log is off; bastion writes one line per request.
    assert not any(record.get("logger") == "uvicorn.access" for record in server.events())


@pytest.mark.slow
def test_run_with_workers_passes_the_app_to_each(folder: Path) -> None:
    with serving("run", folder, "--workers", "2") as (server, _url):
        # Both workers must be up before the signal, or one may be stopped mid-import.
        server.wait_for("started", timeout=STARTUP_TIMEOUT_S, times=2)
        server.process.send_signal(signal.SIGTERM)
        assert server.wait_exit(timeout=STOP_TIMEOUT_S) == 0, server.log()

    # Each worker built the app from the exported environment, and shut it down.
    assert server.count("started") == 2, server.log()
    assert server.count("stopped") == 2, server.log()


@pytest.mark.slow
def test_dev_serves_in_development_and_stops(folder: Path) -> None:
    with serving("dev", folder, env={"BASTION_ENV": "production"}) as (server, _url):
        server.wait_for("started", timeout=STARTUP_TIMEOUT_S)
        server.process.send_signal(signal.SIGTERM)
        assert server.wait_exit(timeout=STOP_TIMEOUT_S) == 0, server.log()

    started = next(record for record in server.events() if record.get("event") == "started")
    assert started["env"] == "development"
    serving_line = next(record for record in server.events() if record.get("event") == "serving")
    assert serving_line["reload"] is True
