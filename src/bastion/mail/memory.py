"""The ``memory`` backend: messages kept in a list, for tests."""

from __future__ import annotations

from email.message import EmailMessage


class MemoryTransport:
    """Appends every message to :attr:`sent`; nothing leaves the process.

    Example::

        outbox = MemoryTransport()
        mailer = Mailer(MailSection(), templates, transport=outbox)
        await mailer.send_template("welcome", "ana@example.com", name="Ana")
        [email] = outbox.sent
        assert email["Subject"] == "Welcome, Ana"
    """

    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []

    async def send(self, message: EmailMessage) -> None:
        self.sent.append(message)
