"""An email as data (:class:`Message`) and its MIME form (:func:`build_email`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One email, before it is turned into MIME.

    Args:
        to: Recipient addresses (``"ana@example.com"`` or ``"Ana <ana@example.com>"``).
        subject: One line; newlines are refused when the email is built.
        text: The plain-text body; every email has one, for clients that show no HTML.
        html: The HTML alternative, if any.
        from_address: The sender.
        reply_to: Where replies go, when not to the sender.
        headers: Extra headers (``List-Unsubscribe``...); they cannot replace the ones
            above.
        message_id: A ``<...@domain>`` id. Pass the same one when sending again after a
            failure, so receivers can recognise the duplicate; generated when ``None``.
    """

    to: tuple[str, ...]
    subject: str
    text: str
    html: str | None = None
    from_address: str
    reply_to: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    message_id: str | None = None

    def __post_init__(self) -> None:
        # A bare string would be iterated into one "recipient" per character.
        if isinstance(self.to, str):
            raise TypeError("to: a tuple of addresses, not a single string")
        if not self.to:
            raise ValueError("to: at least one recipient")


def build_email(message: Message) -> EmailMessage:
    """The MIME email for ``message``: ``text/plain``, or ``multipart/alternative`` with
    the text first and the HTML last (clients show the last part they can render).

    Raises:
        ValueError: a header value contains a newline, or an extra header repeats one
            that may appear only once (``Subject``...).
    """
    email = EmailMessage()
    email["From"] = message.from_address
    email["To"] = ", ".join(message.to)
    if message.reply_to:
        email["Reply-To"] = message.reply_to
    email["Subject"] = message.subject
    email["Date"] = format_datetime(datetime.now(UTC))
    # The domain is the sender's: make_msgid's default looks up this host's FQDN,
    # which can stall for seconds without DNS.
    email["Message-ID"] = message.message_id or make_msgid(domain=_domain(message.from_address))
    for name, value in message.headers.items():
        email[name] = value
    email.set_content(message.text)
    if message.html is not None:
        email.add_alternative(message.html, subtype="html")
    return email


def _domain(address: str) -> str:
    return parseaddr(address)[1].rpartition("@")[2] or "localhost"
