"""Structured logging with structlog: JSON in production, readable in development.

Standard-library loggers (uvicorn, SQLAlchemy, Alembic) are routed through the same
processors, so every line, whoever writes it, carries the request id bound in
``structlog.contextvars`` and passes the secret scrubber.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from functools import lru_cache
from typing import Any

import structlog

_SECRET_KEYS = re.compile(
    # "pan" only as a word of its own (card_pan), never inside one (span_id, company).
    r"(pass(word|wd)?|secret|token|authorization|api[_-]?key|cookie|card|cvv|cvc"
    r"|(?<![a-z])pan(?![a-z])|session)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_KEY_VALUE = re.compile(
    r"(?i)\b(pass(?:word|wd)?|secret|token|api[_-]?key|authorization)\b(\s*[=:]\s*)[^\s,;&'\"]+"
)
_CARD_NUMBER = re.compile(r"\b\d(?:[ -]?\d){12,18}\b")
# One cheap search decides whether a string needs the three substitutions at all;
# almost every logged string (paths, routes, ids) does not.
_MAYBE_SECRET = re.compile(
    r"(?i)bearer|basic|pass|secret|token|api[_-]?key|authorization|\d(?:[ -]?\d){12}"
)
REDACTED = "[redacted]"


@lru_cache(maxsize=4096)
def _is_secret_key(key: str) -> bool:
    return _SECRET_KEYS.search(key) is not None


def scrub(value: Any, key: str = "") -> Any:
    """Redact secrets: values under secret-looking keys, bearer tokens and card numbers."""
    if key and _is_secret_key(key) and value not in (None, "", [], {}):
        return REDACTED
    if isinstance(value, dict):
        return {k: scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        if not _MAYBE_SECRET.search(value):
            return value
        value = _KEY_VALUE.sub(r"\1\2" + REDACTED, _BEARER.sub(r"\1 " + REDACTED, value))
        return _CARD_NUMBER.sub(REDACTED, value)
    return value


def _scrub_processor(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event):
        if key in ("timestamp", "level", "logger"):
            continue
        if key in ("event", "exception", "exc_info"):
            # Messages and rendered tracebacks are scrubbed by shape, never dropped.
            if not isinstance(event[key], BaseException | bool | tuple):
                event[key] = scrub(event[key])
            continue
        event[key] = scrub(event[key], key)
    return event


def _scrub_exception(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    # Runs after the traceback is rendered; everything else was scrubbed already.
    if "exception" in event:
        event["exception"] = scrub(event["exception"])
    return event


# Tracebacks without local variables: locals hold request headers and credentials.
_TRACEBACKS = structlog.processors.ExceptionRenderer(
    structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of writing.

    A plain StreamHandler keeps the stream it was created with, which breaks when
    the stream is replaced later (test runners, daemonizing, interactive tools).
    """

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging(
    *, level: str = "INFO", fmt: str = "auto", env: str = "development", file: str | None = None
) -> None:
    """Configure structlog and the standard library logging; safe to call again.

    Args:
        level: Minimum level.
        fmt: ``json``, ``console`` or ``auto`` (console in development, JSON elsewhere).
        env: The environment name, for ``auto``.
        file: Log to this file instead of standard error.
    """
    use_json = fmt == "json" or (fmt == "auto" and env != "development")
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _scrub_processor,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=file is None and sys.stderr.isatty())
    )
    final: list[Any] = (
        [_TRACEBACKS, _scrub_exception]
        if use_json
        else [structlog.processors.format_exc_info, _scrub_exception]
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final, renderer],
    )
    handler: logging.Handler = (
        logging.FileHandler(file, encoding="utf-8") if file else _StderrHandler()
    )
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_bastion", False):
            root.removeHandler(old)
    handler._bastion = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # uvicorn's own access log would duplicate bastion's; its error logger stays.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


def get_logger(name: str = "bastion", **bound: Any) -> Any:
    """A structlog logger; ``bound`` values appear on every line it writes."""
    return structlog.get_logger(name).bind(**bound)
