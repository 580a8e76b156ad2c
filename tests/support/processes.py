"""A service that tests start as a real subprocess: :class:`ServiceProcess`.

The support modules for the payment gateway, the OIDC provider and the SMTP server
each hold one, and add what is particular to their service: the command, the check
that it is ready, and the helpers tests call.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx
import pytest

#: How much of the log a failed start shows: the end is where the error is.
LOG_TAIL_CHARS = 3000
POLL_INTERVAL_S = 0.05


class ServiceProcess:
    """One subprocess and its log; :meth:`start` it, :meth:`stop` it."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None

    def start(
        self,
        command: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        ready: Callable[[], bool],
        name: str,
        timeout_s: float,
    ) -> None:
        """Run ``command`` and wait until ``ready()`` is true.

        If the process exits first, or ``timeout_s`` passes, it is stopped and the test
        fails with the end of its log. ``env`` None inherits this process's environment.
        """
        # Output goes to a file, not a pipe: nobody reads a pipe while tests run, and a
        # full one would stall the service.
        self._output = tempfile.TemporaryFile()  # noqa: SIM115
        self._process = subprocess.Popen(
            list(command), cwd=cwd, env=env, stdout=self._output, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout_s
        while not ready():
            if self._process.poll() is not None or time.monotonic() > deadline:
                log = self.log()[-LOG_TAIL_CHARS:]
                self.stop()
                pytest.fail(f"the {name} did not start:\n{log}", pytrace=False)
            time.sleep(POLL_INTERVAL_S)

    def stop(self) -> None:
        """Terminate the process (kill it if it lingers) and close its log."""
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._output is not None:
            self._output.close()
            self._output = None

    def log(self) -> str:
        """Everything the process has written so far; empty once stopped."""
        if self._output is None:
            return ""
        # pread, not seek + read: the child's stdout shares this file's offset, so
        # seeking back would make the child's next line overwrite the start of the log.
        fd = self._output.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")


def http_ok(url: str) -> Callable[[], bool]:
    """A ``ready`` check for :meth:`ServiceProcess.start`: ``GET url`` answers 200."""

    def ready() -> bool:
        try:
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.TransportError:
            return False

    return ready


@contextmanager
def alone_among_test_runs(name: str) -> Iterator[None]:
    """Hold the machine-wide lock ``name`` while the block runs.

    ``make test`` runs its SQLite and PostgreSQL passes at once: a test that loads the
    machine with processes of its own (the chaos test's workers) takes turns with its
    twin in the other pass instead of sharing two cores with it.
    """
    path = Path(tempfile.gettempdir()) / f"bastion-tests-{name}.lock"
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
