"""An app that sends templated email through the platform's ``send_email`` job."""

from __future__ import annotations

from pathlib import Path

from bastion import App

app = App("mailtests", mail_templates=Path(__file__).parent / "mail")
