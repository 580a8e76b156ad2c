"""The mailer: builds messages, renders templates and hands them to the configured transport."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bastion.mail.base import MailError, MailTemporaryError, Transport
from bastion.mail.console import ConsoleTransport
from bastion.mail.file import FileTransport
from bastion.mail.memory import MemoryTransport
from bastion.mail.message import Message, build_email
from bastion.mail.smtp import SmtpTransport
from bastion.mail.templates import Templates
from bastion.observability.logs import get_logger
from bastion.settings.sections import MailSection


class Mailer:
    """Sends transactional email through the backend ``[mail]`` selects.

    Example::

        mailer = Mailer.from_settings(settings.mail, templates_dir=HERE / "templates" / "mail")
        await mailer.send_template("welcome", user.email, locale="es", name=user.name)

    Args:
        settings: The ``[mail]`` section.
        templates: The templates :meth:`send_template` renders; ``None`` allows plain
            :meth:`send` only.
        transport: Deliver through this instead of the configured backend (tests,
            custom providers).
    """

    def __init__(
        self,
        settings: MailSection,
        templates: Templates | None = None,
        *,
        transport: Transport | None = None,
    ) -> None:
        self.settings = settings
        self.templates = templates
        self.transport = transport if transport is not None else _transport_for(settings)
        self.log = get_logger("bastion.mail")

    @classmethod
    def from_settings(
        cls, settings: MailSection, *, templates_dir: str | Path | None = None
    ) -> Mailer:
        """The runtime's mailer.

        Args:
            settings: The ``[mail]`` section.
            templates_dir: The app's template folder; ``[mail] templates_dir`` is used
                when this is ``None``. With neither, only :meth:`send` works.
        """
        folder = templates_dir if templates_dir is not None else settings.templates_dir
        return cls(settings, Templates(folder) if folder is not None else None)

    async def send(
        self,
        to: str | Sequence[str],
        subject: str,
        text: str,
        html: str | None = None,
        *,
        from_address: str | None = None,
        reply_to: str | None = None,
        headers: Mapping[str, str] | None = None,
        message_id: str | None = None,
    ) -> str:
        """Send one email; ``from_address`` defaults to ``[mail] from_address``.

        Returns:
            The Message-ID. Pass it back as ``message_id`` when retrying, so
            receivers can tell a repeat from a new message.

        Raises:
            MailTemporaryError: worth another try later.
            MailPermanentError: another try would fail the same way.
        """
        message = Message(
            to=(to,) if isinstance(to, str) else tuple(to),
            subject=subject,
            text=text,
            html=html,
            from_address=from_address or self.settings.from_address,
            reply_to=reply_to,
            headers=dict(headers or {}),
            message_id=message_id,
        )
        return await self.send_message(message)

    async def send_message(self, message: Message) -> str:
        """Send a prepared :class:`Message`; returns its Message-ID (see :meth:`send`)."""
        email = build_email(message)
        message_id = str(email["Message-ID"])
        transport = type(self.transport).__name__
        try:
            await self.transport.send(email)
        except MailError as exc:
            self.log.warning(
                "mail_failed",
                message_id=message_id,
                transport=transport,
                temporary=isinstance(exc, MailTemporaryError),
                smtp_code=exc.smtp_code,
                reason=str(exc),
            )
            raise
        self.log.info(
            "mail_sent", message_id=message_id, transport=transport, recipients=len(message.to)
        )
        return message_id

    async def send_template(
        self, name: str, to: str | Sequence[str], /, locale: str = "en", **context: Any
    ) -> str:
        """Render template ``name`` in ``locale`` with ``context`` and send it.

        ``name`` and ``to`` are positional-only, so templates may use variables of
        those names.

        Raises:
            RuntimeError: the mailer has no templates.
            MailTemplateNotFound: see :meth:`Templates.render`.
            MailTemplateError: a variable the template uses is missing from ``context``.
            MailTemporaryError: see :meth:`send`.
            MailPermanentError: see :meth:`send`.
        """
        if self.templates is None:
            raise RuntimeError(
                "this mailer has no templates: set [mail] templates_dir or pass templates_dir"
            )
        subject, text, html = self.templates.render(name, locale, **context)
        return await self.send(to, subject, text, html)


def _transport_for(settings: MailSection) -> Transport:
    if settings.backend == "smtp":
        return SmtpTransport(settings)
    if settings.backend == "file":
        return FileTransport(settings.outbox_dir)
    if settings.backend == "memory":
        return MemoryTransport()
    return ConsoleTransport()
