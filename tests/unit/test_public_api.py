"""The public API is exactly what bastion/__init__.py exports (httpx's test_exported_members)."""

from __future__ import annotations

import bastion


def test_all_is_sorted_and_complete() -> None:
    exported = [name for name in vars(bastion) if name.isidentifier() and not name.startswith("_")]
    public = list(bastion.__all__)
    for name in public:
        assert hasattr(bastion, name), name
    modules = {
        "alerts",
        "app",
        "auth",
        "console",
        "monitoring",
        "files",
        "idempotency",
        "integrations",
        "jobs",
        "mail",
        "pubsub",
        "ratelimit",
        "realtime",
        "search",
        "webhooks",
        "workflows",
        "cache",
        "context",
        "db",
        "errors",
        "functions",
        "http",
        "i18n",
        "observability",
        "settings",
        "types",
        "testing",
        "cli",
    }
    assert set(exported) - set(public) <= modules | {"annotations"}


def test_the_public_api_is_pinned() -> None:
    assert bastion.__all__ == [
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
