"""The transport seam and the two ways sending can fail.

::

    UpstreamFailed (502 upstream_failed)
    └── MailError                    sending failed
        ├── MailTemporaryError       connection refused, time-out, 4xx reply: retry later
        └── MailPermanentError       5xx reply (unknown recipient, refused sender): don't

The split is what a job runner acts on: it retries a temporary failure with backoff
and dead-letters a permanent one, which no number of retries would cure. Raised
from a function instead, either becomes a 502 problem response like any failed
upstream call.
"""

from __future__ import annotations

from email.message import EmailMessage
from typing import Protocol

from bastion.errors.exceptions import UpstreamFailed


class Transport(Protocol):
    """Delivers a built message: to an SMTP server, a log, a folder or a list.

    Example::

        class Outbox:
            async def send(self, message: EmailMessage) -> None:
                await queue.put(bytes(message))

        mailer = Mailer(MailSection(), transport=Outbox())
    """

    async def send(self, message: EmailMessage) -> None:
        """Deliver ``message`` or raise :class:`MailError`."""


class MailError(UpstreamFailed):
    """Sending failed; ``str(error)`` is the reason, with the server's reply when there was one.

    Args:
        reason: What went wrong, for logs and dead-letter records (never shown to clients).
        smtp_code: The SMTP reply code, when the server answered.
    """

    def __init__(self, reason: str, *, smtp_code: int | None = None) -> None:
        super().__init__(dependency="mail")
        self.reason = reason
        self.smtp_code = smtp_code

    def __str__(self) -> str:
        return self.reason


class MailTemporaryError(MailError):
    """The server could not be reached, timed out or answered 4xx: the same message may
    go through later."""


class MailPermanentError(MailError):
    """The server refused the message for good (5xx), or refused some of several
    recipients after accepting others: sending it again would not help, or would
    duplicate it."""
