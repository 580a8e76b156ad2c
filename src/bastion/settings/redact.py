"""Render settings for humans with every secret hidden."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, SecretStr

from bastion.settings.sections import Settings

_SECRET_NAMES = re.compile(r"(secret|password|passwd|token|api_key|private_key)", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@/\s]+)(?P<tail>@)")
MASK = "********"


def redact_url(url: str) -> str:
    """Hide the password part of a URL such as ``postgresql://user:pw@host/db``."""
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}{m['tail']}", url)


def redacted(settings: Settings) -> dict[str, Any]:
    """Settings as a plain dict, secrets masked; safe to print or log."""
    return _walk(settings, key="")  # type: ignore[no-any-return]


def _walk(value: Any, key: str) -> Any:
    if isinstance(value, SecretStr):
        return MASK if value.get_secret_value() else ""
    if isinstance(value, BaseModel):
        return {name: _walk(getattr(value, name), name) for name in type(value).model_fields}
    if isinstance(value, dict):
        return {k: _walk(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, key) for v in value]
    if isinstance(value, str):
        if _SECRET_NAMES.search(key) and value:
            return MASK
        return redact_url(value)
    return value
