"""The ``file`` backend: an outbox folder of ``.eml`` files any mail client can open."""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import anyio.to_thread

from bastion.mail.base import MailTemporaryError


class FileTransport:
    """Writes each message to ``<directory>/<UTC time>-<random>.eml``.

    Names sort by sending time. Each file is written under a hidden temporary name
    and renamed into place, so a reader watching the folder never sees half a message.

    Args:
        directory: The outbox; created on the first message.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    async def send(self, message: EmailMessage) -> None:
        """Write the message; a failed write (disk full...) is a temporary error."""
        try:
            await anyio.to_thread.run_sync(self._write, bytes(message))
        except OSError as exc:
            raise MailTemporaryError(f"cannot write to {self.directory}: {exc}") from exc

    def _write(self, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.directory / f"{stamp}-{secrets.token_hex(4)}.eml"
        partial = path.with_name(f".{path.name}.tmp")
        try:
            with partial.open("wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
