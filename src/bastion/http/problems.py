"""Turn any exception into an RFC 9457 ``application/problem+json`` response.

One mapping serves every path: bastion errors, FastAPI validation errors, malformed
JSON, routing 404/405, body-limit 413, database failures and unhandled exceptions.
5xx errors and configured codes are also written to the error log.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import anyio.to_thread
from fastapi.exceptions import RequestValidationError
from opentelemetry import trace
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from bastion.db.database import Database
from bastion.db.tables import ErrorLogEntry
from bastion.errors import (
    BadRequest,
    BastionError,
    ErrorCatalog,
    FieldError,
    InternalError,
    ValidationFailed,
)
from bastion.functions import database_error
from bastion.http.state import locale_of, request_id_of, state, user_of
from bastion.observability.logs import get_logger, scrub
from bastion.observability.tracing import current_trace_id, record_failure
from bastion.settings.sections import Settings
from bastion.types import Receive, Scope, Send

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:bastion:error:"

_STATUS_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    502: "upstream_failed",
    503: "service_unavailable",
    504: "upstream_timeout",
}


def field_path(loc: Sequence[Any]) -> str:
    """``("body", "items", 0, "quantity")`` -> ``items[0].quantity``."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:] or parts[:1]
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def classify(exc: BaseException, *, body_limit: int | None = None) -> BastionError:
    """The client-facing error an exception stands for."""
    if isinstance(exc, BastionError):
        return exc
    if isinstance(exc, RequestValidationError):
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return BadRequest("invalid_json")
        return ValidationFailed(
            errors=[
                FieldError(
                    field_path(e.get("loc", ())),
                    str(e.get("type", "value_error")),
                    str(e.get("msg", "")),
                    _params(e.get("ctx")),
                )
                for e in errors
            ]
        )
    if isinstance(exc, HTTPException):
        code = _STATUS_CODES.get(
            exc.status_code, "internal_error" if exc.status_code >= 500 else "bad_request"
        )
        params: dict[str, Any] = (
            {"limit": body_limit} if exc.status_code == 413 and body_limit else {}
        )
        return BastionError(code, status=exc.status_code, headers=dict(exc.headers or {}), **params)
    if isinstance(exc, sa_exc.DBAPIError):
        mapped = database_error(exc)
        if isinstance(mapped, BastionError):
            return mapped
    return InternalError()


def _params(ctx: Any) -> dict[str, Any] | None:
    if not isinstance(ctx, dict):
        return None
    return {k: (v if isinstance(v, int | float | str) else str(v)) for k, v in ctx.items()}


class ProblemRenderer:
    """Renders problems for one runtime.

    Args:
        catalog: Codes, statuses and localized messages.
        settings: Locale, exposure of internals and which codes to log.
        database: Where the error log is written (``None`` skips it).
    """

    def __init__(
        self, catalog: ErrorCatalog, settings: Settings, database: Database | None
    ) -> None:
        self.catalog = catalog
        self.settings = settings
        self.database = database
        self.log_codes = frozenset(settings.errors.log_codes)
        self.max_body = settings.server.max_body_bytes
        self._log = get_logger("bastion.errors")

    async def response(self, scope: Scope, exc: BaseException) -> Response:
        error = classify(exc, body_limit=state(scope).get("body_limit", self.max_body))
        code = error.error_code
        status = error.status_override or self.catalog.status_of(code) or type(error).status or 500
        locale = locale_of(scope, self.settings)
        message = self.catalog.render(code, locale, error.params)
        detail = error.detail or message.detail
        if status == 500 and not self.settings.expose_internals:
            # A 500's own text describes internals; outside development clients get
            # the catalog's generic message and the request id to quote.
            detail = message.detail
        body: dict[str, Any] = {
            "type": TYPE_PREFIX + code,
            "title": message.title,
            "status": status,
            "detail": detail,
            "code": code,
            "request_id": request_id_of(scope),
            "instance": scope.get("path", ""),
        }
        if error.errors:
            body["errors"] = [self._field(e, locale) for e in error.errors]
        if status >= 500 and error is not exc and self.settings.expose_internals:
            body["exception"] = f"{type(exc).__name__}: {exc}"[:2000]
        headers = dict(error.headers)
        if status >= 500:
            # The request's span (the tracing middleware's) carries the exception, since
            # nothing re-raises it past the error middleware.
            record_failure(trace.get_current_span(), exc)
        if status >= 500 or code in self.log_codes:
            await self._record(scope, code, status, detail, exc)
        return Response(
            json.dumps(body, ensure_ascii=False),
            status_code=status,
            headers=headers,
            media_type=PROBLEM_JSON,
        )

    def _field(self, error: FieldError, locale: str) -> dict[str, Any]:
        params = dict(error.params or {})
        if "expected" in params and isinstance(params["expected"], str):
            params["expected"] = params["expected"].replace("'", "")
        message = (
            self.catalog.render_field(error.code, locale, params) or error.message or error.code
        )
        return {"field": error.field, "code": error.code, "message": message}

    async def asgi(self, scope: Scope, receive: Receive, send: Send, exc: BaseException) -> None:
        """Write the problem for ``exc`` directly to an ASGI connection."""
        response = await self.response(scope, exc)
        await response(scope, receive, send)

    async def handler(self, request: Request, exc: Exception) -> Response:
        """FastAPI exception handler signature."""
        return await self.response(request.scope, exc)

    async def _record(
        self, scope: Scope, code: str, status: int, detail: str, exc: BaseException
    ) -> None:
        if self.database is None:
            return
        route = scope.get("route")
        user = user_of(scope)
        entry = ErrorLogEntry(
            code=code,
            status=status,
            method=str(scope.get("method", "")),
            path=str(scope.get("path", ""))[:2048],
            route=getattr(route, "path", None),
            user_id=user.id if user else None,
            request_id=request_id_of(scope) or None,
            trace_id=current_trace_id(),
            detail=detail,
            data=scrub(
                {
                    "exception": f"{type(exc).__name__}: {exc}"[:2000],
                    "query": scope.get("query_string", b"").decode("latin-1")[:2000],
                }
            ),
        )

        def write() -> None:
            assert self.database is not None
            with self.database.transaction() as session:
                session.add(entry)

        try:
            await anyio.to_thread.run_sync(write)
        except Exception as failure:  # the error log must never turn one error into two
            self._log.warning(
                "error_log_write_failed", error=f"{type(failure).__name__}: {failure}"
            )
