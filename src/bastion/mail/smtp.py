"""SMTP delivery through aiosmtplib, with every failure classified as temporary or permanent.

RFC 5321 makes the reply code the classifier: 4xx means "not now" (greylisting, a full
queue, a busy mailbox) and 5xx means "not ever" (no such user, relaying denied).
Failures without a reply (refused connection, time-out, dropped connection) are
temporary: the server may be back in a minute. A server that lacks what the settings
ask for (STARTTLS, AUTH) is permanent: that takes a configuration change.
"""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib

from bastion.mail.base import MailError, MailPermanentError, MailTemporaryError
from bastion.settings.sections import MailSection


class SmtpTransport:
    """Sends each message over its own SMTP connection (``[mail] backend = "smtp"``).

    One connection per message keeps a transport free of shared state: a failed or
    timed-out conversation cannot spoil the next one. Transactional mail is sent
    one message at a time, so a pool would save little.
    """

    def __init__(self, settings: MailSection) -> None:
        self.settings = settings

    async def send(self, message: EmailMessage) -> None:
        """Deliver ``message`` to the configured server.

        Raises:
            MailTemporaryError: no connection, a time-out, or a 4xx reply.
            MailPermanentError: a 5xx reply, a server without what the settings ask
                for (STARTTLS, AUTH), or some of several recipients refused.
        """
        settings = self.settings
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        try:
            refused, _reply = await aiosmtplib.send(
                message,
                hostname=settings.smtp_host,
                port=settings.smtp_port,
                username=settings.smtp_username,
                password=password,
                use_tls=settings.smtp_tls == "tls",
                # False, not aiosmtplib's default None: "none" must not upgrade on its own,
                # and "starttls" must fail rather than fall back to plain text.
                start_tls=settings.smtp_tls == "starttls",
                timeout=settings.timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            # One permanent refusal among them would fail every retry as well.
            codes = [refusal.code for refusal in exc.recipients]
            reasons = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            error = classify_reply(max(codes), f"every recipient refused: {reasons}")
            raise error from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise classify_reply(exc.code, f"{exc.code} {exc.message}") from exc
        except OSError as exc:  # refused, reset, dropped, timed out (aiosmtplib's included)
            raise MailTemporaryError(f"{type(exc).__name__}: {exc}") from exc
        except aiosmtplib.SMTPException as exc:
            # What is left is a mismatch between settings and server (no STARTTLS, no
            # AUTH, no SMTPUTF8): it needs a person, not another attempt.
            raise MailPermanentError(f"{type(exc).__name__}: {exc}") from exc
        if refused:
            # The others have the message already: a retry would send it to them again.
            reasons = "; ".join(f"{rcpt}: {r.code} {r.message}" for rcpt, r in refused.items())
            raise MailPermanentError(f"sent, but some recipients were refused: {reasons}")


def classify_reply(code: int, reason: str) -> MailError:
    """The error for an SMTP reply: 5xx is permanent, anything else temporary."""
    if 500 <= code < 600:
        return MailPermanentError(reason, smtp_code=code)
    return MailTemporaryError(reason, smtp_code=code)
