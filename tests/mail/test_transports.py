"""Building emails, the file, memory and console backends, and the mailer's choices."""

from __future__ import annotations

from email import message_from_bytes, policy
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from bastion.mail import (
    ConsoleTransport,
    FileTransport,
    Mailer,
    MailTemporaryError,
    MemoryTransport,
    Message,
    Templates,
    build_email,
)
from bastion.settings.sections import MailSection


def message(**values: object) -> Message:
    fields: dict[str, object] = {
        "to": ("ana@example.com",),
        "subject": "Hi",
        "text": "Text",
        "from_address": "Shop <shop@example.com>",
        **values,
    }
    return Message(**fields)  # type: ignore[arg-type]


def test_text_only_is_a_single_part() -> None:
    email = build_email(message())
    assert email.get_content_type() == "text/plain"
    assert email["Message-ID"].endswith("@example.com>"), "the sender's domain, no DNS lookup"


def test_html_makes_it_multipart_alternative_with_the_html_last() -> None:
    email = build_email(message(html="<p>Hi</p>", message_id="<fixed@shop.example>"))
    assert email.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in email.iter_parts()] == ["text/plain", "text/html"]
    assert email["Message-ID"] == "<fixed@shop.example>"


def test_header_injection_is_refused() -> None:
    with pytest.raises(ValueError, match="linefeed"):
        build_email(message(subject="Hi\r\nBcc: everyone@example.com"))


def test_to_must_be_a_tuple_of_addresses() -> None:
    with pytest.raises(TypeError, match="not a single string"):
        message(to="ana@example.com")
    with pytest.raises(ValueError, match="at least one recipient"):
        message(to=())


async def test_the_memory_backend_keeps_what_was_sent() -> None:
    mailer = Mailer(MailSection(backend="memory", from_address="shop@example.com"))
    assert isinstance(mailer.transport, MemoryTransport)
    message_id = await mailer.send("ana@example.com", "Hi", "Text", "<p>Text</p>")
    [email] = mailer.transport.sent
    assert (email["Message-ID"], email["From"], email["To"]) == (
        message_id,
        "shop@example.com",
        "ana@example.com",
    )


async def test_the_file_backend_writes_parsable_eml_files(tmp_path: Path) -> None:
    outbox = tmp_path / "var" / "mail"
    mailer = Mailer(MailSection(backend="file", outbox_dir=str(outbox)))
    assert isinstance(mailer.transport, FileTransport)
    first = await mailer.send("ana@example.com", "First", "One")
    second = await mailer.send("bo@example.com", "Second", "Two", "<p>Two</p>")

    files = sorted(outbox.iterdir())
    assert [f.suffix for f in files] == [".eml", ".eml"], "no temporary files left behind"
    parsed = [message_from_bytes(f.read_bytes(), policy=policy.default) for f in files]
    assert [(p["Message-ID"], p["Subject"]) for p in parsed] == [
        (first, "First"),
        (second, "Second"),
    ]
    html = parsed[1].get_body(preferencelist=("html",))
    assert html is not None
    assert html.get_content().strip() == "<p>Two</p>"


async def test_a_file_backend_that_cannot_write_is_a_temporary_failure(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(MailTemporaryError, match="cannot write"):
        await FileTransport(blocker / "mail").send(build_email(message()))


async def test_the_console_backend_logs_the_message() -> None:
    mailer = Mailer(MailSection())
    assert isinstance(mailer.transport, ConsoleTransport)
    with capture_logs() as logs:
        message_id = await mailer.send("ana@example.com", "Hi", "Body text", "<p>Body</p>")
    [shown] = [entry for entry in logs if entry["event"] == "mail_console"]
    assert shown["message_id"] == message_id
    assert (shown["to"], shown["subject"], shown["text"]) == (
        "ana@example.com",
        "Hi",
        "Body text\n",
    )
    assert shown["has_html"] is True
    [sent] = [entry for entry in logs if entry["event"] == "mail_sent"]
    assert (sent["transport"], sent["recipients"]) == ("ConsoleTransport", 1)


async def test_send_template_uses_the_settings_folder_or_the_apps(tmp_path: Path) -> None:
    (tmp_path / "hi.subject.txt").write_text("Hi {{ name }}")
    (tmp_path / "hi.txt").write_text("Hello {{ name }}")
    settings = MailSection(backend="memory", templates_dir=str(tmp_path))

    for mailer in (
        Mailer.from_settings(settings),
        Mailer.from_settings(MailSection(backend="memory"), templates_dir=tmp_path),
    ):
        assert isinstance(mailer.transport, MemoryTransport)
        await mailer.send_template("hi", "ana@example.com", name="Ana")
        [email] = mailer.transport.sent
        assert email["Subject"] == "Hi Ana"


async def test_send_template_without_templates_says_how_to_fix_it() -> None:
    mailer = Mailer.from_settings(MailSection(backend="memory"))
    with pytest.raises(RuntimeError, match="templates_dir"):
        await mailer.send_template("hi", "ana@example.com")


async def test_a_custom_transport_replaces_the_backend(tmp_path: Path) -> None:
    outbox = MemoryTransport()
    (tmp_path / "x.subject.txt").write_text("X")
    (tmp_path / "x.txt").write_text("x")
    mailer = Mailer(MailSection(backend="smtp"), Templates(tmp_path), transport=outbox)
    await mailer.send_template("x", ["a@example.com", "b@example.com"])
    assert outbox.sent[0]["To"] == "a@example.com, b@example.com"
