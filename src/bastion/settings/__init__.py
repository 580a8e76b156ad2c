"""Settings: the model, the loader and redaction."""

from __future__ import annotations

from bastion.settings.loader import SettingsError, load_settings
from bastion.settings.redact import redact_url, redacted
from bastion.settings.sections import (
    DEVELOPMENT_SECRET,
    AppSection,
    DatabaseSection,
    Environment,
    Section,
    Settings,
)

__all__ = [
    "DEVELOPMENT_SECRET",
    "AppSection",
    "DatabaseSection",
    "Environment",
    "Section",
    "Settings",
    "SettingsError",
    "load_settings",
    "redact_url",
    "redacted",
]
