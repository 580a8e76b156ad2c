"""Transactional email: Jinja2 templates, and SMTP, console, file or memory delivery."""

from __future__ import annotations

from bastion.mail.base import MailError, MailPermanentError, MailTemporaryError, Transport
from bastion.mail.console import ConsoleTransport
from bastion.mail.file import FileTransport
from bastion.mail.mailer import Mailer
from bastion.mail.memory import MemoryTransport
from bastion.mail.message import Message, build_email
from bastion.mail.smtp import SmtpTransport
from bastion.mail.templates import (
    MailTemplateError,
    MailTemplateNotFound,
    RenderedEmail,
    Templates,
)

__all__ = [
    "ConsoleTransport",
    "FileTransport",
    "MailError",
    "MailPermanentError",
    "MailTemplateError",
    "MailTemplateNotFound",
    "MailTemporaryError",
    "Mailer",
    "MemoryTransport",
    "Message",
    "RenderedEmail",
    "SmtpTransport",
    "Templates",
    "Transport",
    "build_email",
]
