"""The mailer over SMTP against a real server process on loopback (``smtp_server``)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bastion.mail import (
    Mailer,
    MailError,
    MailPermanentError,
    MailTemporaryError,
    SmtpTransport,
    Templates,
)
from bastion.settings.sections import MailSection
from bastion.testing import free_port
from tests.support.smtp import SmtpTestServer


def mailer_for(server: SmtpTestServer, templates: Templates | None = None, **values: Any) -> Mailer:
    settings = MailSection(**{**server.settings(), "timeout_s": 2.0, **values})
    return Mailer(settings, templates)


def body(message: Any, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    assert part is not None, f"no text/{subtype} part"
    return str(part.get_content())


async def test_text_and_html_arrive_as_multipart_alternative(smtp_server: SmtpTestServer) -> None:
    mailer = mailer_for(smtp_server, from_address="Shop <shop@example.com>")
    message_id = await mailer.send(
        ["ana@example.com", "Bo <bo@example.com>"],
        "¡Hola, Ana!",
        "Plain ñ text\n",
        "<p>Rich <b>ñ</b> text</p>",
        reply_to="help@example.com",
        headers={"X-Campaign": "welcome"},
    )

    [received] = smtp_server.messages()
    assert received["Message-ID"] == message_id
    assert received["From"] == "Shop <shop@example.com>"
    assert received["To"] == "ana@example.com, Bo <bo@example.com>"
    assert received["Subject"] == "¡Hola, Ana!"
    assert received["Reply-To"] == "help@example.com"
    assert received["X-Campaign"] == "welcome"
    assert received["Date"] is not None
    assert received.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in received.iter_parts()] == ["text/plain", "text/html"]
    assert body(received, "plain") == "Plain ñ text\n"
    assert body(received, "html").strip() == "<p>Rich <b>ñ</b> text</p>"


async def test_a_template_is_rendered_and_sent(smtp_server: SmtpTestServer, tmp_path: Path) -> None:
    (tmp_path / "hello.subject.txt").write_text("Hello {{ name }}")
    (tmp_path / "hello.txt").write_text("Hi {{ name }}")
    mailer = mailer_for(smtp_server, Templates(tmp_path))

    await mailer.send_template("hello", "ana@example.com", name="Ana")

    [received] = smtp_server.messages()
    assert received["Subject"] == "Hello Ana"
    assert received.get_content_type() == "text/plain"
    assert body(received, "plain").strip() == "Hi Ana"


async def test_a_refused_connection_is_temporary_and_fast() -> None:
    settings = MailSection(backend="smtp", smtp_port=free_port(), timeout_s=5.0)
    started = time.monotonic()
    with pytest.raises(MailTemporaryError) as caught:
        await Mailer(settings).send("ana@example.com", "s", "t")
    assert time.monotonic() - started < 1.0
    assert caught.value.smtp_code is None
    assert "connect" in str(caught.value).lower()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) but never says a word."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])


async def test_a_server_that_never_greets_is_a_temporary_time_out(silent_port: int) -> None:
    settings = MailSection(backend="smtp", smtp_port=silent_port, timeout_s=0.2)
    started = time.monotonic()
    with pytest.raises(MailTemporaryError, match="Timeout"):
        await Mailer(settings).send("ana@example.com", "s", "t")
    assert time.monotonic() - started < 2.0


async def test_an_unknown_recipient_is_permanent(smtp_server: SmtpTestServer) -> None:
    with pytest.raises(MailPermanentError) as caught:
        await mailer_for(smtp_server).send("unknown@example.com", "s", "t")
    assert caught.value.smtp_code == 550
    assert "unknown@example.com: 550 5.1.1 No such user here" in str(caught.value)
    assert smtp_server.messages() == []


async def test_a_451_is_temporary(smtp_server: SmtpTestServer) -> None:
    with pytest.raises(MailTemporaryError) as caught:
        await mailer_for(smtp_server).send("busy@example.com", "s", "t")
    assert caught.value.smtp_code == 451
    assert smtp_server.messages() == []


async def test_a_refusal_among_several_recipients_is_permanent_after_sending(
    smtp_server: SmtpTestServer,
) -> None:
    # The accepted recipient has the message: a retry would send it twice.
    with pytest.raises(MailPermanentError, match=r"busy@example\.com: 451"):
        await mailer_for(smtp_server).send(["ana@example.com", "busy@example.com"], "s", "t")
    [received] = smtp_server.messages()
    assert received["To"] == "ana@example.com, busy@example.com"


async def test_starttls_against_a_server_without_it_is_permanent(
    smtp_server: SmtpTestServer,
) -> None:
    with pytest.raises(MailPermanentError, match="STARTTLS"):
        await mailer_for(smtp_server, smtp_tls="starttls").send("ana@example.com", "s", "t")
    assert smtp_server.messages() == []


async def test_failures_are_logged_and_become_502_problems(smtp_server: SmtpTestServer) -> None:
    from structlog.testing import capture_logs

    with capture_logs() as logs, pytest.raises(MailError) as caught:
        await mailer_for(smtp_server).send("unknown@example.com", "s", "t")
    [failed] = [entry for entry in logs if entry["event"] == "mail_failed"]
    assert (failed["temporary"], failed["smtp_code"]) == (False, 550)
    assert (caught.value.error_code, caught.value.status) == ("upstream_failed", 502)
    assert caught.value.params == {"dependency": "mail"}


def test_the_smtp_backend_is_chosen_by_settings() -> None:
    mailer = Mailer(MailSection(backend="smtp"))
    assert isinstance(mailer.transport, SmtpTransport)
