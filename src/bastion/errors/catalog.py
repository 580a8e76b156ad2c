"""Error codes, their HTTP statuses and message templates per locale.

The code is also the i18n key. Platform messages ship in ``messages/<locale>.toml``;
apps add theirs with :meth:`ErrorCatalog.declare` or :meth:`ErrorCatalog.load_dir`.
"""

from __future__ import annotations

import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_PLATFORM_MESSAGES = Path(__file__).parent / "messages"

#: Every platform code and its HTTP status.
PLATFORM_CODES: dict[str, int] = {
    "bad_request": 400,
    "invalid_json": 400,
    "idempotency_key_required": 400,
    "idempotency_key_invalid": 400,
    "oidc_failed": 400,
    "invalid_signature": 400,
    "validation_failed": 422,
    "weak_password": 422,
    "idempotency_key_reused": 422,
    "not_authenticated": 401,
    "invalid_credentials": 401,
    "token_expired": 401,
    "token_invalid": 401,
    "token_reused": 401,
    "account_banned": 401,
    "permission_denied": 403,
    "csrf_failed": 403,
    "url_expired": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "not_acceptable": 406,
    "conflict": 409,
    "email_taken": 409,
    "idempotency_in_progress": 409,
    "job_not_retryable": 409,
    "job_not_cancellable": 409,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "rate_limited": 429,
    "too_many_subscriptions": 429,
    "internal_error": 500,
    "upstream_failed": 502,
    "service_unavailable": 503,
    "database_unavailable": 503,
    "upstream_timeout": 504,
}


@dataclass(frozen=True, slots=True)
class Message:
    title: str
    detail: str


@dataclass
class ErrorCatalog:
    """Codes to statuses, and per-locale title/detail templates.

    Example::

        catalog.declare("insufficient_credits", 402, {
            "en": {"title": "Insufficient credits",
                   "detail": "You need {required} credits, but only have {available}."},
        })
    """

    default_locale: str = "en"
    statuses: dict[str, int] = field(default_factory=lambda: dict(PLATFORM_CODES))
    messages: dict[str, dict[str, Message]] = field(default_factory=dict)
    field_messages: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def with_platform_messages(cls, default_locale: str = "en") -> ErrorCatalog:
        catalog = cls(default_locale=default_locale)
        catalog.load_dir(_PLATFORM_MESSAGES)
        return catalog

    def declare(
        self, code: str, status: int, messages: Mapping[str, Mapping[str, str]] | None = None
    ) -> str:
        """Declare an app error code with its status and templates; returns the code."""
        if not code.isidentifier() or code != code.lower():
            raise ValueError(f"error codes are snake_case identifiers, got {code!r}")
        if code in self.statuses and self.statuses[code] != status:
            raise ValueError(
                f"error code {code!r} is already declared with status {self.statuses[code]}"
            )
        self.statuses[code] = status
        for locale, texts in (messages or {}).items():
            self._add(locale, code, texts)
        return code

    def load_dir(self, directory: Path) -> None:
        """Load every ``<locale>.toml`` in a folder: ``[codes.<code>]`` and ``[fields]`` tables.

        A ``status`` key in a code's table declares the code.
        """
        for path in sorted(directory.glob("*.toml")):
            locale = path.stem
            document = tomllib.loads(path.read_text(encoding="utf-8"))
            for code, texts in document.get("codes", {}).items():
                if "status" in texts:
                    self.declare(code, int(texts["status"]))
                self._add(locale, code, texts)
            self.field_messages.setdefault(locale, {}).update(document.get("fields", {}))

    def _add(self, locale: str, code: str, texts: Mapping[str, Any]) -> None:
        title = str(texts.get("title", code.replace("_", " ").capitalize()))
        detail = str(texts.get("detail", title))
        self.messages.setdefault(locale, {})[code] = Message(title, detail)

    @property
    def locales(self) -> list[str]:
        return sorted(self.messages)

    def status_of(self, code: str) -> int | None:
        return self.statuses.get(code)

    def render(self, code: str, locale: str, params: Mapping[str, Any]) -> Message:
        """Title and detail for ``code`` in ``locale``, falling back to the default locale."""
        message = self._lookup(self.messages, code, locale)
        if message is None:
            fallback = code.replace("_", " ").capitalize()
            return Message(fallback, fallback)
        return Message(_fill(message.title, params), _fill(message.detail, params))

    def render_field(self, code: str, locale: str, params: Mapping[str, Any]) -> str | None:
        template = self._lookup(self.field_messages, code, locale)
        return None if template is None else _fill(template, params)

    def _lookup(self, table: Mapping[str, Mapping[str, Any]], code: str, locale: str) -> Any:
        for candidate in (locale, locale.split("-")[0].split("_")[0], self.default_locale):
            found = table.get(candidate, {}).get(code)
            if found is not None:
                return found
        return None

    def missing_translations(self) -> dict[str, list[str]]:
        """Codes lacking a message, per locale; a test keeps this empty."""
        return {
            locale: sorted(code for code in self.statuses if code not in texts)
            for locale, texts in self.messages.items()
            if any(code not in texts for code in self.statuses)
        }


class _Lenient(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


_FORMATTER = string.Formatter()


def _fill(template: str, params: Mapping[str, Any]) -> str:
    # Only plain ``{name}`` fields are filled: a template is never allowed to reach
    # attributes or indexes of the parameters it is given.
    out = []
    values = _Lenient(params)
    for literal, name, spec, _conv in _FORMATTER.parse(template):
        out.append(literal)
        if name is None:
            continue
        if name.isidentifier():
            value = values[name]
            out.append(format(value, spec) if spec and not isinstance(value, str) else str(value))
        else:
            out.append("{" + name + "}")
    return "".join(out)
