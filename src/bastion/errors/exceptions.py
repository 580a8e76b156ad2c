"""The exception tree every client-visible error belongs to.

Raise these from functions; the HTTP layer turns them into RFC 9457
``application/problem+json`` responses with a stable ``code``.

::

    BastionError                      any error a client may see
    ├── BadRequest               400  bad_request, invalid_json
    │   └── InvalidSignature     400  invalid_signature (a webhook's HMAC)
    ├── ValidationFailed         422  validation_failed (+ per-field errors)
    ├── NotAuthenticated         401  not_authenticated
    ├── PermissionDenied         403  permission_denied
    ├── NotFound                 404  not_found
    ├── MethodNotAllowed         405  method_not_allowed
    ├── NotAcceptable            406  not_acceptable
    ├── Conflict                 409  conflict
    ├── PayloadTooLarge          413  payload_too_large
    ├── UnsupportedMediaType     415  unsupported_media_type
    ├── RateLimited              429  rate_limited (+ Retry-After)
    ├── IntegrationError              an upstream dependency failed
    │   ├── UpstreamFailed       502  upstream_failed
    │   ├── ServiceUnavailable   503  service_unavailable, database_unavailable
    │   └── UpstreamTimeout      504  upstream_timeout
    └── InternalError            500  internal_error
        └── ReadOnlyViolation         a query tried to write

Apps declare their own codes (``app.errors.declare(...)``) and raise
``BastionError("their_code", **params)``; the status comes from the declaration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class FieldError:
    """One invalid input field: ``items[0].quantity`` with its own code and message."""

    field: str
    code: str
    message: str | None = None
    params: Mapping[str, Any] | None = None


class BastionError(Exception):
    """An error with a stable machine code, shown to clients as problem+json.

    Args:
        code: The error code; defaults to the class's code.
        detail: A fixed detail text, used instead of the localized template.
        errors: Per-field problems (validation).
        headers: Extra response headers, e.g. ``Retry-After``.
        status: Overrides the status declared for the code.
        **params: Values for the message template (``{required}``...).

    Example::

        raise BastionError("insufficient_credits", required=500, available=120)
    """

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int | None] = None

    def __init__(
        self,
        code: str | None = None,
        *,
        detail: str | None = None,
        errors: Sequence[FieldError] = (),
        headers: Mapping[str, str] | None = None,
        status: int | None = None,
        **params: Any,
    ) -> None:
        self.error_code = code or type(self).code
        self.detail = detail
        self.errors = list(errors)
        self.headers = dict(headers or {})
        self.status_override = status
        self.params = params
        super().__init__(detail or self.error_code)


class BadRequest(BastionError):
    code = "bad_request"
    status = 400


class InvalidSignature(BadRequest):
    """A signed request (an inbound webhook) whose signature is missing, malformed,
    wrong or outside the time tolerance.

    Every cause answers the same to the client, so a forger learns nothing about which
    part failed; ``reason`` says which, for the server's log only.
    """

    code = "invalid_signature"
    status = 400

    def __init__(self, reason: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reason = reason


class ValidationFailed(BastionError):
    code = "validation_failed"
    status = 422


class NotAuthenticated(BastionError):
    code = "not_authenticated"
    status = 401


class PermissionDenied(BastionError):
    code = "permission_denied"
    status = 403


class NotFound(BastionError):
    code = "not_found"
    status = 404


class MethodNotAllowed(BastionError):
    code = "method_not_allowed"
    status = 405


class NotAcceptable(BastionError):
    code = "not_acceptable"
    status = 406


class Conflict(BastionError):
    code = "conflict"
    status = 409


class PayloadTooLarge(BastionError):
    code = "payload_too_large"
    status = 413


class UnsupportedMediaType(BastionError):
    code = "unsupported_media_type"
    status = 415


class RateLimited(BastionError):
    code = "rate_limited"
    status = 429

    def __init__(self, retry_after_s: int, **kwargs: Any) -> None:
        headers = {"Retry-After": str(max(1, int(retry_after_s))), **kwargs.pop("headers", {})}
        super().__init__(headers=headers, retry_after=retry_after_s, **kwargs)


class IntegrationError(BastionError):
    code = "upstream_failed"
    status = 502


class UpstreamFailed(IntegrationError):
    code = "upstream_failed"
    status = 502


class ServiceUnavailable(IntegrationError):
    code = "service_unavailable"
    status = 503


class UpstreamTimeout(IntegrationError):
    code = "upstream_timeout"
    status = 504


class InternalError(BastionError):
    code = "internal_error"
    status = 500


class ReadOnlyViolation(InternalError):
    """A query function tried to write. Queries run in read-only transactions; use a mutation."""
