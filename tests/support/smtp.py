"""A real SMTP server in its own process: the ``smtp_server`` fixture.

The server is aiosmtpd, started as ``python -m tests.support.smtp PORT DIRECTORY``. It
writes every message it accepts to ``DIRECTORY/<n>.eml`` before answering 250, so a
test reads what arrived as soon as the send returns. Some recipients misbehave on
purpose, by local part:

- ``unknown@...`` is refused with ``550 5.1.1`` (permanent);
- ``busy@...`` is refused with ``451 4.3.0`` (temporary);
- anyone else is accepted.

A separate process makes the mailer talk to a real network peer with its own event
loop, as in production, and keeps aiosmtpd's threads and warnings out of the tests.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from bastion.testing.client import free_port
from tests.support.processes import ServiceProcess

ROOT = Path(__file__).resolve().parents[2]
#: Local parts the server refuses, with its reply.
REFUSALS = {
    "unknown": "550 5.1.1 No such user here",
    "busy": "451 4.3.0 Mailbox busy, try again later",
}


class SmtpTestServer:
    """One server process on 127.0.0.1; :meth:`start` it, :meth:`stop` it."""

    host = "127.0.0.1"

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self._service = ServiceProcess()

    def settings(self) -> dict[str, Any]:
        """This server as a ``[mail]`` table."""
        return {"backend": "smtp", "smtp_host": self.host, "smtp_port": self.port}

    def messages(self) -> list[EmailMessage]:
        """Every message received since the last :meth:`clear`, oldest first.

        Line endings are ``\\n``, as in the messages that were sent, not SMTP's ``\\r\\n``.
        """
        return [
            message_from_bytes(path.read_bytes().replace(b"\r\n", b"\n"), policy=policy.default)
            for path in sorted(self.directory.glob("*.eml"))
        ]

    def clear(self) -> None:
        for path in self.directory.glob("*.eml"):
            path.unlink()

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the process and wait until it greets with ``220``."""
        self._service.start(
            [sys.executable, "-m", "tests.support.smtp", str(self.port), str(self.directory)],
            cwd=ROOT,
            ready=self._greets,
            name="SMTP test server",
            timeout_s=timeout_s,
        )

    def stop(self) -> None:
        self._service.stop()

    def _greets(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
                return sock.recv(3) == b"220"
        except OSError:
            return False


@pytest.fixture(scope="session")
def smtp_server_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpTestServer]:
    """The server process, shared by the session; use ``smtp_server`` in tests."""
    server = SmtpTestServer(tmp_path_factory.mktemp("smtp"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def smtp_server(smtp_server_process: SmtpTestServer) -> SmtpTestServer:
    """The running server, with no messages from earlier tests."""
    smtp_server_process.clear()
    return smtp_server_process


class _RecordingHandler:
    """aiosmtpd handler: refuses :data:`REFUSALS`, stores everything else."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.numbers = itertools.count(1)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        refusal = REFUSALS.get(address.partition("@")[0].lower())
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        path = self.directory / f"{next(self.numbers):06d}.eml"
        partial = path.with_name(f".{path.name}.tmp")
        partial.write_bytes(envelope.content)
        os.replace(partial, path)
        return "250 Message accepted for delivery"


def _serve(port: int, directory: Path) -> None:
    from aiosmtpd.controller import Controller

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    controller = Controller(
        _RecordingHandler(directory),
        hostname="127.0.0.1",
        port=port,
        server_hostname="smtp.test",
    )
    controller.start()
    try:
        stop.wait()
    finally:
        controller.stop()


if __name__ == "__main__":
    _serve(int(sys.argv[1]), Path(sys.argv[2]))
