"""bastion: a batteries-included backend runtime for Python.

Declare tables, queries, mutations and actions on an :class:`App`; bastion serves
them as a secure, observable HTTP API.
"""

from __future__ import annotations

from bastion.app import App, Runtime, build_asgi_app
from bastion.auth.principal import Principal
from bastion.context import Context
from bastion.db import (
    NAMING_CONVENTION,
    CursorPage,
    OffsetPage,
    PageResult,
    SortKey,
    UTCDateTime,
    listing_scope,
    paginate_cursor,
    paginate_offset,
)
from bastion.errors import (
    BadRequest,
    BastionError,
    Conflict,
    FieldError,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
    ServiceUnavailable,
    ValidationFailed,
)
from bastion.jobs import Job, Retry, RetryLater
from bastion.settings import Settings, SettingsError, load_settings

__version__ = "0.1.0"

__all__ = [
    "NAMING_CONVENTION",
    "App",
    "BadRequest",
    "BastionError",
    "Conflict",
    "Context",
    "CursorPage",
    "FieldError",
    "Job",
    "NotAuthenticated",
    "NotFound",
    "OffsetPage",
    "PageResult",
    "PermissionDenied",
    "Principal",
    "Retry",
    "RetryLater",
    "Runtime",
    "ServiceUnavailable",
    "Settings",
    "SettingsError",
    "SortKey",
    "UTCDateTime",
    "ValidationFailed",
    "__version__",
    "build_asgi_app",
    "listing_scope",
    "load_settings",
    "paginate_cursor",
    "paginate_offset",
]
