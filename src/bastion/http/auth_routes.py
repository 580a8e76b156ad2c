"""The account endpoints: register, login/logout, tokens, ``/me``, API keys, bans.

Served when an app calls :meth:`bastion.App.use_auth`, under the app's API prefix.
They are plain FastAPI routes rather than functions because they set cookies and
need to commit a revocation before answering with an error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar

import anyio.to_thread
from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from limits import parse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from bastion.auth.api_keys import (
    create_api_key,
    list_api_keys,
    revoke_api_key,
)
from bastion.auth.audit import require_reason
from bastion.auth.identities import link_identity
from bastion.auth.oidc import OidcClient
from bastion.auth.passwords import Passwords
from bastion.auth.principal import Principal
from bastion.auth.service import CSRF_KEY, Authenticator, Identity, StartedSession, UserView
from bastion.auth.sessions import SessionRecord
from bastion.auth.tokens import TokenPair, TokenReused, Tokens
from bastion.auth.users import User, create_user, normalize_email
from bastion.db.database import Database
from bastion.errors import (
    BastionError,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServiceUnavailable,
    ValidationFailed,
)
from bastion.http.state import (
    SESSION,
    client_address,
    identity_of,
    request_id_of,
    session_of,
    state,
)
from bastion.observability.logs import get_logger
from bastion.ratelimit import Limiter, LimiterUnavailable
from bastion.settings.sections import Settings

RegisterHook = Callable[[Session, User], None]
LoginHook = Callable[[Session, User, dict[str, Any]], None]
OIDC_STATE = "_oidc"
T = TypeVar("T")


class Preferences(BaseModel):
    """The default ``PATCH /me/preferences`` body; ``language`` picks the error locale."""

    model_config = ConfigDict(extra="forbid")

    theme: Literal["light", "dark", "auto"] | None = None
    language: Literal["en", "es", "tr", "fr", "de"] | None = None
    notifications: bool | None = None


class Credentials(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(max_length=4096)


class Registration(Credentials):
    name: str = Field("", max_length=200)


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=512)


class ApiKeyRequest(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[str] = Field(min_length=1, max_length=32)


class Reason(BaseModel):
    reason: str = Field(max_length=1000)


class SessionOut(BaseModel):
    signed_in: bool
    data: dict[str, Any]
    csrf_token: str


class UserOut(BaseModel):
    id: int
    email: str
    name: str
    roles: list[str]
    preferences: dict[str, Any]
    created_at: datetime


class LoginOut(BaseModel):
    user: UserOut
    csrf_token: str


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int


class ApiKeyOut(BaseModel):
    id: int
    name: str
    scopes: list[str]
    prefix: str
    created_at: datetime
    last_used_at: datetime | None


class NewApiKeyOut(BaseModel):
    id: int
    name: str
    key: str
    scopes: list[str]


class BanOut(BaseModel):
    id: int
    banned: bool
    revoked: dict[str, int] = Field(default_factory=dict)


@dataclass
class AuthRoutes:
    """How an app wants its account endpoints (see :meth:`bastion.App.use_auth`)."""

    preferences: type[BaseModel] = Preferences
    on_register: RegisterHook | None = None
    on_login: LoginHook | None = None
    admin_permission: str = "write:all"


def credential_paths(prefix: str) -> frozenset[str]:
    """The endpoints that take credentials in the body (exempt from the CSRF check)."""
    names = ("login", "token", "register", "refresh", "revoke")
    return frozenset(f"{prefix}/auth/{name}" for name in names)


def _user_out(user: User | UserView) -> UserOut:
    return UserOut.model_validate(user, from_attributes=True)


def _token_out(pair: TokenPair) -> TokenOut:
    return TokenOut(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        token_type=pair.token_type,
        expires_in=pair.expires_in,
    )


def _use_session(request: Request, record: SessionRecord | None) -> None:
    """Make ``record`` the request's session (after login or logout replaced it)."""
    state(request.scope)[SESSION] = record


def _public(data: dict[str, Any]) -> dict[str, Any]:
    # Keys starting with "_" are the platform's (CSRF token, OIDC state): never shown.
    return {key: value for key, value in data.items() if not key.startswith("_")}


def _caller(request: Request) -> Identity:
    identity = identity_of(request.scope)
    if not isinstance(identity, Identity):
        raise NotAuthenticated()
    return identity


def build_auth_router(
    config: AuthRoutes,
    *,
    authenticator: Authenticator,
    database: Database,
    limiter: Limiter,
    passwords: Passwords,
    settings: Settings,
    oidc: OidcClient | None = None,
) -> APIRouter:
    """The account endpoints wired to one runtime's services."""
    router = APIRouter(tags=["auth"])
    log = get_logger("bastion.auth")
    tokens: Tokens = authenticator.tokens
    auth = settings.auth
    login_limit = parse(auth.login_limit)

    async def check_password(request: Request, body: Credentials) -> User:
        # Failures only are counted, per email and client address: a user who types
        # the right password is never locked out by someone else guessing elsewhere.
        try:
            email_key = normalize_email(body.email)
        except ValidationFailed:
            email_key = body.email.strip().lower()
        address = client_address(request.scope)
        key = f"login:{email_key}:{address}"
        try:
            wait = await limiter.exhausted(key, login_limit) if settings.ratelimit.enabled else None
        except LimiterUnavailable as exc:
            log.warning("login_limit_unavailable", error=str(exc))
            if not settings.ratelimit.fail_open:
                raise ServiceUnavailable(headers={"Retry-After": "5"}) from exc
            wait = None
        if wait is not None:
            log.info("login_rate_limited", client=address)
            raise RateLimited(wait)
        try:
            return await authenticator.check_password(body.email, body.password)
        except BastionError as exc:
            if exc.error_code == "invalid_credentials" and settings.ratelimit.enabled:
                try:
                    await limiter.hit(key, login_limit)
                except LimiterUnavailable:
                    log.warning("login_limit_unavailable")
            raise

    def set_cookie(response: Response, session_id: str) -> None:
        response.set_cookie(
            auth.session_cookie_name,
            session_id,
            max_age=auth.session_absolute_timeout_s,
            path="/",
            domain=auth.session_cookie_domain,
            secure=authenticator.cookie_secure,
            httponly=True,
            samesite=auth.session_cookie_samesite,
        )

    async def sign_in(
        request: Request, response: Response, user: User, previous: SessionRecord | None
    ) -> StartedSession:
        """Start ``user``'s session in place of ``previous``, after the login hook.

        The hook commits before the session exists: if it raises, its transaction rolls
        back, no session is started and ``previous`` stays as it was, so the login fails
        with nothing half-done and can simply be tried again.
        """
        data = authenticator.carried_data(previous)
        hook = config.on_login
        if hook is not None:

            def run_hook() -> None:
                with database.transaction() as session:
                    hook(session, session.merge(user, load=False), data)

            await _thread(run_hook)
        started = await authenticator.start_session(user.id, previous=previous, data=data)
        _use_session(request, started.record)
        set_cookie(response, started.session_id)
        return started

    @router.post("/auth/register", status_code=201, response_model=UserOut)
    async def register(body: Registration) -> UserOut:
        """Create an account (role ``user``)."""

        def create() -> UserOut:
            with database.transaction() as session:
                user = create_user(
                    session,
                    passwords,
                    email=body.email,
                    password=body.password,
                    name=body.name,
                    roles=("user",),
                )
                if config.on_register is not None:
                    config.on_register(session, user)
                return _user_out(user)

        return await _thread(create)

    @router.post("/auth/login", response_model=LoginOut)
    async def login(request: Request, body: Credentials, response: Response) -> LoginOut:
        """Sign in with a session cookie; answers the CSRF token unsafe requests must send."""
        user = await check_password(request, body)
        started = await sign_in(request, response, user, session_of(request.scope))
        log.info("login", user_id=user.id, method="password")
        return LoginOut(user=_user_out(user), csrf_token=started.csrf_token)

    @router.post("/auth/logout", status_code=204)
    async def logout(request: Request) -> Response:
        """End the browser session."""
        identity = _caller(request)
        if identity.session is None:
            raise NotAuthenticated()
        await authenticator.sessions.delete(identity.session.key)
        authenticator.signed_out(identity.principal.id, identity.session.key)
        _use_session(request, None)
        response = Response(status_code=204)
        response.delete_cookie(
            auth.session_cookie_name,
            path="/",
            domain=auth.session_cookie_domain,
            secure=authenticator.cookie_secure,
            httponly=True,
            samesite=auth.session_cookie_samesite,
        )
        return response

    @router.post("/auth/token", response_model=TokenOut)
    async def token(request: Request, body: Credentials) -> TokenOut:
        """Exchange email and password for an access token and a refresh token."""
        user = await check_password(request, body)

        def issue() -> TokenPair:
            with database.transaction() as session:
                return tokens.issue(session, session.merge(user, load=False))

        return _token_out(await _thread(issue))

    @router.post("/auth/refresh", response_model=TokenOut)
    async def refresh(body: RefreshRequest) -> TokenOut:
        """Rotate a refresh token: the old one stops working; using it again revokes all."""

        def rotate() -> TokenPair | TokenReused:
            with database.transaction() as session:
                return tokens.rotate(session, body.refresh_token)

        outcome = await _thread(rotate)
        if isinstance(outcome, TokenReused):
            log.warning("refresh_token_reused")
            raise outcome
        return _token_out(outcome)

    @router.post("/auth/revoke", status_code=204)
    async def revoke(body: RefreshRequest) -> Response:
        """Revoke a refresh token and its family (RFC 7009: unknown tokens answer 204 too)."""

        def run() -> None:
            with database.transaction() as session:
                tokens.revoke(session, body.refresh_token)

        await _thread(run)
        return Response(status_code=204)

    @router.get("/session", response_model=SessionOut, tags=["session"])
    async def current_session(request: Request, response: Response) -> SessionOut:
        """The browser session's data; starts an anonymous session when there is none."""
        record = session_of(request.scope)
        if record is None:
            started = await authenticator.start_session(None)
            _use_session(request, started.record)
            set_cookie(response, started.session_id)
            record = started.record
        csrf = record.data.get(CSRF_KEY)
        return SessionOut(
            signed_in=record.user_id is not None,
            data=_public(record.data),
            csrf_token=csrf if isinstance(csrf, str) else "",
        )

    async def session_preferences(request: Request, body: Any) -> dict[str, Any]:
        record = session_of(request.scope)
        if record is None:
            raise NotAuthenticated()
        current = record.data.get("preferences")
        merged = {**(current if isinstance(current, dict) else {})}
        merged.update(body.model_dump(exclude_unset=True))
        # Saved by the authentication middleware when the response succeeds.
        record.data["preferences"] = merged
        return merged

    session_preferences.__annotations__["body"] = config.preferences
    router.add_api_route(
        "/session/preferences",
        session_preferences,
        methods=["PATCH"],
        tags=["session"],
        summary="Change the browser session's preferences (signed in or not)",
    )

    @router.get("/me", response_model=UserOut)
    async def me(request: Request) -> UserOut:
        """The signed-in user."""
        return _user_out(_caller(request).user)

    preferences_model = config.preferences

    async def update_preferences(request: Request, body: Any) -> dict[str, Any]:
        identity = _caller(request)
        changes = body.model_dump(exclude_unset=True)

        def run() -> dict[str, Any]:
            with database.transaction() as session:
                user = session.get(User, identity.user.id)
                if user is None:
                    raise NotFound()
                user.preferences = {**(user.preferences or {}), **changes}
                return dict(user.preferences)

        return await _thread(run)

    update_preferences.__annotations__["body"] = preferences_model
    router.add_api_route(
        "/me/preferences",
        update_preferences,
        methods=["PATCH"],
        summary="Change the signed-in user's preferences",
    )

    @router.post("/api-keys", status_code=201, response_model=NewApiKeyOut)
    async def new_api_key(request: Request, body: ApiKeyRequest) -> NewApiKeyOut:
        """Create an API key; the key is shown in this response only."""
        identity = _caller(request)
        if identity.method == "api_key":
            raise PermissionDenied()

        def run() -> NewApiKeyOut:
            with database.transaction() as session:
                user = session.get(User, identity.user.id)
                if user is None:
                    raise NotFound()
                made = create_api_key(
                    session,
                    user,
                    name=body.name,
                    scopes=body.scopes,
                    grantable=identity.principal.permissions,
                    prefix=auth.api_key_prefix,
                )
                return NewApiKeyOut(
                    id=made.record.id,
                    name=made.record.name,
                    key=made.key,
                    scopes=made.record.scopes,
                )

        return await _thread(run)

    @router.get("/api-keys", response_model=list[ApiKeyOut])
    async def api_keys(request: Request) -> list[ApiKeyOut]:
        """The caller's live API keys, without secrets."""
        identity = _caller(request)

        def run() -> list[ApiKeyOut]:
            with database.read_transaction() as session:
                return [
                    ApiKeyOut(
                        id=key.id,
                        name=key.name,
                        scopes=key.scopes,
                        prefix=f"{auth.api_key_prefix}_{key.public_id}",
                        created_at=key.created_at,
                        last_used_at=key.last_used_at,
                    )
                    for key in list_api_keys(session, identity.user.id)
                ]

        return await _thread(run)

    @router.delete("/api-keys/{key_id}", status_code=204)
    async def delete_api_key(request: Request, key_id: int) -> Response:
        """Revoke one of the caller's keys (someone else's answers 404)."""
        identity = _caller(request)

        def run() -> None:
            with database.transaction() as session:
                revoke_api_key(session, identity.user.id, key_id)

        await _thread(run)
        return Response(status_code=204)

    if oidc is not None:
        _add_oidc_routes(
            router,
            oidc,
            authenticator,
            database,
            passwords,
            settings,
            set_cookie,
            sign_in,
            on_register=config.on_register,
        )

    def admin(request: Request) -> Principal:
        principal = _caller(request).principal
        if not principal.allows(config.admin_permission):
            raise PermissionDenied()
        return principal

    async def set_ban(request: Request, user_id: int, body: Reason, banned: bool) -> BanOut:
        actor = admin(request)
        reason = require_reason(body.reason)
        revoked = await authenticator.set_banned(
            user_id,
            banned,
            actor_id=actor.id,
            reason=reason,
            request_id=request_id_of(request.scope) or None,
        )
        log.info("user_banned" if banned else "user_unbanned", user_id=user_id, actor=actor.id)
        return BanOut(id=user_id, banned=banned, revoked=revoked)

    @router.post("/admin/users/{user_id}/ban", response_model=BanOut, tags=["admin"])
    async def ban(request: Request, user_id: int, body: Reason) -> BanOut:
        """Ban a user: sessions, refresh tokens and API keys are revoked at once."""
        return await set_ban(request, user_id, body, True)

    @router.post("/admin/users/{user_id}/unban", response_model=BanOut, tags=["admin"])
    async def unban(request: Request, user_id: int, body: Reason) -> BanOut:
        """Lift a ban (revoked credentials stay revoked)."""
        return await set_ban(request, user_id, body, False)

    return router


def _add_oidc_routes(
    router: APIRouter,
    oidc: OidcClient,
    authenticator: Authenticator,
    database: Database,
    passwords: Passwords,
    settings: Settings,
    set_cookie: Callable[[Response, str], None],
    sign_in: Callable[[Request, Response, User, SessionRecord | None], Awaitable[StartedSession]],
    *,
    on_register: RegisterHook | None,
) -> None:
    log = get_logger("bastion.auth.oidc")

    def callback_url(request: Request, provider: str) -> str:
        path = request.url_for("oidc_callback", provider=provider).path
        base = settings.oidc.redirect_base_url or str(request.base_url).rstrip("/")
        return f"{base}{path}"

    @router.get("/auth/oidc/{provider}/login", status_code=302, name="oidc_login")
    async def oidc_login(request: Request, provider: str) -> Response:
        """Start signing in with an OpenID Connect provider (redirects to it)."""
        started = await oidc.start(provider, callback_url(request, provider))
        # The state, nonce and PKCE verifier wait in a fresh server-side session: the
        # callback must come back to this browser, and nothing secret goes in a URL.
        session = await authenticator.start_session(None, previous=session_of(request.scope))
        _use_session(request, session.record)
        session.record.data[OIDC_STATE] = started.state
        await authenticator.sessions.save(session.record)
        response = RedirectResponse(started.url, status_code=302)
        set_cookie(response, session.session_id)
        return response

    @router.get("/auth/oidc/{provider}/callback", response_model=LoginOut, name="oidc_callback")
    async def oidc_callback(request: Request, provider: str, response: Response) -> LoginOut:
        """Finish signing in: link or create the account by verified email, start a session."""
        record = session_of(request.scope)
        if record is None or not isinstance(record.data.get(OIDC_STATE), dict):
            log.info("oidc_refused", provider=provider, reason="no sign-in in progress")
            raise BastionError("oidc_failed")
        state = record.data.pop(OIDC_STATE)
        # Dropped before anything else can fail: a callback URL works once.
        await authenticator.sessions.save(record)
        identity = await oidc.finish(provider, dict(request.query_params), state)

        def link() -> User:
            with database.transaction() as session:
                user = link_identity(session, identity, passwords, on_create=on_register)
                session.flush()
                session.expunge(user)
                return user

        user = await _thread(link)
        if user.is_banned:
            raise BastionError("account_banned")
        started = await sign_in(request, response, user, record)
        log.info("login", user_id=user.id, method="oidc", provider=provider)
        return LoginOut(user=_user_out(user), csrf_token=started.csrf_token)


async def _thread(fn: Callable[[], T]) -> T:
    return await anyio.to_thread.run_sync(fn)
