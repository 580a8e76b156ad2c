"""Per-request facts kept in the ASGI scope: request id, caller, locale.

Middleware writes them; endpoints and error rendering read them. They live in
``scope["state"]`` so that Starlette's ``request.state`` sees the same values.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from bastion.auth.principal import Principal
from bastion.errors import NotAuthenticated, PermissionDenied
from bastion.i18n import negotiate_locale
from bastion.settings.sections import Settings
from bastion.types import Scope

REQUEST_ID = "request_id"
USER = "user"
USER_LOCALE = "user_locale"
IDENTITY = "identity"
SESSION = "session"


def state(scope: Scope) -> dict[str, Any]:
    return scope.setdefault("state", {})  # type: ignore[no-any-return]


def request_id_of(scope: Scope) -> str:
    return str(state(scope).get(REQUEST_ID, ""))


def user_of(scope: Scope) -> Principal | None:
    user = state(scope).get(USER)
    return user if isinstance(user, Principal) else None


def require_permission(scope: Scope, permission: str) -> Principal:
    """The caller, who must hold ``permission``: 401 when anonymous, else 403."""
    user = user_of(scope)
    if user is None:
        raise NotAuthenticated()
    if not user.allows(permission):
        raise PermissionDenied()
    return user


def identity_of(scope: Scope) -> Any:
    """The :class:`bastion.auth.service.Identity` of the caller, or ``None``."""
    return state(scope).get(IDENTITY)


def session_of(scope: Scope) -> Any:
    """The browser session (:class:`bastion.auth.SessionRecord`) of the request, or ``None``."""
    return state(scope).get(SESSION)


def client_address(scope: Scope) -> str:
    """The client's address (as :class:`ClientIpMiddleware` resolved it), or ``unknown``."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def caller_of(scope: Scope) -> tuple[str, str]:
    """Who is calling, for per-caller records (rate limits, idempotency keys): the kind
    (``user`` or ``ip``) and a key made of ids and addresses only, never a credential."""
    user = user_of(scope)
    if user is not None:
        return "user", f"user:{user.id}"
    return "ip", f"ip:{client_address(scope)}"


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def locale_of(scope: Scope, settings: Settings) -> str:
    """``?lang=`` > the user's saved preference > ``Accept-Language`` > the default."""
    explicit = None
    query = scope.get("query_string", b"")
    if b"lang=" in query:
        values = parse_qs(query.decode("latin-1")).get("lang")
        explicit = values[0] if values else None
    return negotiate_locale(
        settings.i18n.locales,
        settings.i18n.default_locale,
        explicit=explicit,
        preference=state(scope).get(USER_LOCALE),
        accept_language=header(scope, b"accept-language"),
    )
