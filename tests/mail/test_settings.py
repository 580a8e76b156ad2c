"""The ``[mail]`` section: its checks and what production refuses."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from bastion.settings import SettingsError, load_settings
from bastion.settings.redact import MASK, redacted
from bastion.settings.sections import MailSection

SECRET = {"BASTION_APP_SECRET_KEY": "k" * 40}


def test_defaults_log_mail_instead_of_sending_it() -> None:
    settings = load_settings(None, environ={})
    assert settings.mail == MailSection()
    assert (settings.mail.backend, settings.mail.smtp_tls) == ("console", "none")


@pytest.mark.parametrize("address", ["shop@example.com", "Shop <shop@example.com>"])
def test_from_address_accepts_a_display_name(address: str) -> None:
    assert MailSection(from_address=address).from_address == address


@pytest.mark.parametrize("address", ["shop", "@example.com", "shop@", "a@b.example\r\nBcc: x@y"])
def test_from_address_must_be_an_address(address: str) -> None:
    with pytest.raises(ValidationError, match="must be an address"):
        MailSection(from_address=address)


def test_username_and_password_go_together() -> None:
    with pytest.raises(ValidationError, match="set both or neither"):
        MailSection(smtp_username="shop")
    with pytest.raises(ValidationError, match="set both or neither"):
        MailSection(smtp_password="pw")


def test_environment_variables_configure_it_and_the_password_is_masked() -> None:
    environ = {
        "BASTION_MAIL_BACKEND": "smtp",
        "BASTION_MAIL_SMTP_PORT": "587",
        "BASTION_MAIL_SMTP_USERNAME": "shop",
        "BASTION_MAIL_SMTP_PASSWORD": "hunter2-hunter2",
    }
    settings = load_settings(None, environ=environ)
    assert (settings.mail.backend, settings.mail.smtp_port) == ("smtp", 587)
    assert redacted(settings)["mail"]["smtp_password"] == MASK


@pytest.mark.parametrize(
    ("mail", "refused"),
    [
        ({"backend": "smtp", "smtp_host": "mail.example.com"}, True),
        ({"backend": "smtp", "smtp_host": "mail.example.com", "smtp_tls": "starttls"}, False),
        ({"backend": "smtp", "smtp_host": "mail.example.com", "smtp_tls": "tls"}, False),
        ({"backend": "smtp", "smtp_host": "localhost"}, False),  # a local relay
        ({"backend": "smtp", "smtp_host": "127.0.0.1"}, False),
        ({"backend": "console", "smtp_host": "mail.example.com"}, False),
        ({"backend": "file"}, False),  # an app may not send mail at all
        ({"backend": "memory"}, False),
    ],
)
def test_production_refuses_plain_smtp_off_loopback(mail: dict[str, Any], refused: bool) -> None:
    overrides = {"mail": mail}
    load_settings(None, env="development", environ=SECRET, overrides=overrides)
    if not refused:
        load_settings(None, env="production", environ=SECRET, overrides=overrides)
        return
    with pytest.raises(SettingsError) as error:
        load_settings(None, env="production", environ=SECRET, overrides=overrides)
    assert error.value.problems == [
        "mail.smtp_tls: production needs 'starttls' or 'tls' (plain SMTP only on loopback)"
    ]
