"""The ``console`` backend: development mail goes to the log instead of the world."""

from __future__ import annotations

from email.message import EmailMessage

from bastion.observability.logs import get_logger


class ConsoleTransport:
    """Logs each message (headers and text body) as one ``mail_console`` line.

    The line passes the log's secret scrubber like every other, so a ``?token=...``
    in a link shows as ``[redacted]``; the ``file`` backend keeps messages verbatim.
    """

    def __init__(self) -> None:
        self.log = get_logger("bastion.mail")

    async def send(self, message: EmailMessage) -> None:
        body = message.get_body(preferencelist=("plain",))
        self.log.info(
            "mail_console",
            message_id=message["Message-ID"],
            sender=message["From"],
            to=message["To"],
            subject=message["Subject"],
            has_html=message.get_body(preferencelist=("html",)) is not None,
            text=body.get_content() if isinstance(body, EmailMessage) else "",
        )
