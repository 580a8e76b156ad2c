"""Errors: stable codes, the exception tree, localized message catalogs."""

from __future__ import annotations

from bastion.errors.catalog import PLATFORM_CODES, ErrorCatalog, Message
from bastion.errors.exceptions import (
    BadRequest,
    BastionError,
    Conflict,
    FieldError,
    IntegrationError,
    InternalError,
    InvalidSignature,
    MethodNotAllowed,
    NotAcceptable,
    NotAuthenticated,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    ReadOnlyViolation,
    ServiceUnavailable,
    UnsupportedMediaType,
    UpstreamFailed,
    UpstreamTimeout,
    ValidationFailed,
)

__all__ = [
    "PLATFORM_CODES",
    "BadRequest",
    "BastionError",
    "Conflict",
    "ErrorCatalog",
    "FieldError",
    "IntegrationError",
    "InternalError",
    "InvalidSignature",
    "Message",
    "MethodNotAllowed",
    "NotAcceptable",
    "NotAuthenticated",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "RateLimited",
    "ReadOnlyViolation",
    "ServiceUnavailable",
    "UnsupportedMediaType",
    "UpstreamFailed",
    "UpstreamTimeout",
    "ValidationFailed",
]
