"""`make test`: the whole suite on SQLite and the database tests on PostgreSQL, side by side.

The two passes are two pytest processes started together (most of a pass is one core's
Python, or waiting on a server, so two of them take little more time than the longer
one). Each writes to a log of its own, printed in full when the pass ends; the run fails
when either pass fails. They share no state: their databases have names of their own
(see ``bastion.testing.databases``), and the PostgreSQL pass gets the next Redis database
(``BASTION_TEST_REDIS_URL``), so key names, counts and flushes stay apart.

PostgreSQL (and Redis) tests skip with the reason on a machine without them; with
CI=true a missing service fails the run instead. Without PostgreSQL, only the SQLite
pass runs, with its output straight on the terminal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import IO
from urllib.parse import urlsplit

from bastion.testing import in_ci
from bastion.testing.databases import (
    DEFAULT_POSTGRES_URL,
    DEFAULT_REDIS_URL,
    postgres_unavailable_reason,
)

#: A Redis server has databases 0-15 unless configured otherwise.
REDIS_DATABASES = 16


@dataclass
class Pass:
    """One pytest process whose output goes to a temporary log."""

    title: str
    command: list[str]
    env: dict[str, str]
    log: IO[bytes] = field(default_factory=tempfile.TemporaryFile)
    started: float = field(default_factory=time.monotonic)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.command, env=self.env, stdout=self.log, stderr=subprocess.STDOUT
        )

    def report(self) -> int:
        """Print the log under a heading with the outcome; the exit code."""
        assert self.process is not None
        code = self.process.wait()
        minutes, seconds = divmod(round(time.monotonic() - self.started), 60)
        outcome = "passed" if code == 0 else f"FAILED (exit {code})"
        print(f"== {self.title}: {outcome} in {minutes}:{seconds:02d}", flush=True)
        self.log.seek(0)
        sys.stdout.buffer.write(self.log.read())
        sys.stdout.flush()
        self.log.close()
        # A pass killed by a signal exits with minus its number; a shell says 128 + it.
        return code if code >= 0 else 128 - code


def next_redis_database(url: str) -> str:
    """``url`` with the following database number, so two passes never share keys."""
    parts = urlsplit(url)
    current = int(parts.path.strip("/") or 0)
    return parts._replace(path=f"/{(current + 1) % REDIS_DATABASES}").geturl()


def main() -> int:
    pytest = [sys.executable, "-m", "pytest", *sys.argv[1:]]
    url = os.environ.get("BASTION_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    reason = postgres_unavailable_reason(url)
    if reason is not None and not in_ci():
        print("== bastion tests on SQLite", flush=True)
        code = subprocess.call(pytest)
        print(f"== PostgreSQL pass skipped: {reason}", flush=True)
        return code
    redis = os.environ.get("BASTION_TEST_REDIS_URL", DEFAULT_REDIS_URL)
    passes = [
        Pass("bastion tests on SQLite", pytest, dict(os.environ)),
        Pass(
            "bastion database tests on PostgreSQL",
            [*pytest, "-m", "db"],
            {
                **os.environ,
                "BASTION_TEST_DATABASE": "postgres",
                "BASTION_TEST_REDIS_URL": next_redis_database(redis),
            },
        ),
    ]
    print("== " + " and ".join(p.title for p in passes) + ", side by side", flush=True)
    for each in passes:
        each.start()
    codes: list[int] = []
    try:
        running = list(passes)
        while running:
            done = [p for p in running if p.process is not None and p.process.poll() is not None]
            for finished in done:
                codes.append(finished.report())
                running.remove(finished)
            time.sleep(0.2)
    except KeyboardInterrupt:
        # A terminal's Ctrl-C reaches both pytest processes already; a SIGINT from
        # elsewhere reaches only this one. Either way pytest ends on SIGINT after its
        # teardown, which drops the PostgreSQL databases it made.
        for each in running:
            if each.process is not None and each.process.poll() is None:
                each.process.send_signal(signal.SIGINT)
        for each in running:
            each.report()
        return 130
    return next((code for code in codes if code != 0), 0)


if __name__ == "__main__":
    raise SystemExit(main())
