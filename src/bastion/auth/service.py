"""``Authenticator``: from credentials on a request to the caller, and the account actions
that cut across credentials (login, session start, ban).

Every authenticated request loads its user from the database (one primary-key
read): roles are always current, and a banned user is locked out on the very next
request whatever credential they hold, on every process.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import anyio.to_thread
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from bastion.auth.api_keys import (
    find_api_key,
    needs_touch,
    revoke_user_api_keys,
    touch_api_key,
)
from bastion.auth.audit import audit
from bastion.auth.passwords import Passwords
from bastion.auth.principal import Principal
from bastion.auth.sessions import (
    DatabaseSessionStore,
    InMemorySessionStore,
    RedisSessionStore,
    SessionRecord,
    SessionStore,
    hash_session_id,
    new_session_id,
)
from bastion.auth.tokens import Tokens
from bastion.auth.users import User, normalize_email, principal_for
from bastion.db.database import Database
from bastion.errors import BastionError, NotFound, ValidationFailed
from bastion.settings.sections import Settings

Method = Literal["session", "bearer", "api_key"]

_USER_BY_ID = select(
    User.id,
    User.email,
    User.name,
    User.roles,
    User.preferences,
    User.is_active,
    User.banned_at,
    User.created_at,
).where(User.id == bindparam("user_id"))

#: A session's ``last_seen_at`` is saved at most this often (sliding idle expiry).
TOUCH_RESOLUTION = timedelta(minutes=1)
CSRF_KEY = "_csrf"


class SessionStoreUnavailable(Exception):
    """The session store did not answer."""


@dataclass(frozen=True, slots=True)
class UserView:
    """What a request needs of its user, detached from any database session."""

    id: int
    email: str
    name: str
    roles: tuple[str, ...]
    preferences: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> UserView:
        return cls(
            id=user.id,
            email=user.email,
            name=user.name,
            roles=tuple(user.roles),
            preferences=dict(user.preferences or {}),
            created_at=user.created_at,
        )

    @property
    def locale(self) -> str | None:
        language = self.preferences.get("language")
        return language if isinstance(language, str) else None


@dataclass(slots=True)
class Identity:
    """An authenticated caller and how it proved who it is."""

    principal: Principal
    user: UserView
    method: Method
    session: SessionRecord | None = None
    api_key_id: int | None = None
    expires_at: datetime | None = None
    """When the bearer token it came with expires (long-lived connections recheck it)."""


@dataclass(slots=True)
class StartedSession:
    session_id: str
    """The raw id, for the cookie only; the store keeps its hash."""
    record: SessionRecord
    csrf_token: str = field(default="")


class Authenticator:
    """Credentials to callers, for one runtime.

    Args:
        settings: All settings (``[auth]``, ``[redis]``, ``app.secret_key``).
        database: Where users, tokens and keys live.
        passwords: The runtime's password hasher.
    """

    def __init__(self, settings: Settings, database: Database, passwords: Passwords) -> None:
        self.settings = settings
        self.auth = settings.auth
        self.database = database
        self.passwords = passwords
        self.tokens = Tokens(settings.auth, settings.app.secret_key.get_secret_value())
        self.sessions, self._redis = _session_store(settings, database)
        secure = self.auth.session_cookie_secure
        self.cookie_secure = (not settings.is_development) if secure is None else secure
        self._signout_listeners: list[Callable[[str, str | None], None]] = []

    def on_signout(self, listener: Callable[[str, str | None], None]) -> None:
        """Call ``listener(user_id, session_key)`` when a session ends (logout) or, with
        ``session_key=None``, when all of a user's credentials are revoked (ban): open
        realtime connections must close too."""
        self._signout_listeners.append(listener)

    def signed_out(self, user_id: int | str, session_key: str | None = None) -> None:
        for listener in self._signout_listeners:
            listener(str(user_id), session_key)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()

    # -- per request --------------------------------------------------------------

    async def from_bearer(self, token: str) -> Identity:
        claims = self.tokens.verify_access(token)
        user = await self._load_user(claims.user_id)
        return self._identity(user, "bearer", expires_at=claims.expires_at)

    async def from_api_key(self, presented: str) -> Identity:
        found = await anyio.to_thread.run_sync(self._api_key, presented)
        if found is None:
            raise BastionError("token_invalid")
        user, key_id, scopes = found
        _refuse_banned(user)
        principal = principal_for(user, self.auth.roles)
        # A key never exceeds its owner: its scopes, narrowed to what the roles grant today.
        principal = Principal(
            principal.id, roles=principal.roles, permissions=principal.permissions & scopes
        )
        return Identity(principal, UserView.of(user), "api_key", api_key_id=key_id)

    async def from_session(self, session_id: str) -> tuple[SessionRecord | None, Identity | None]:
        """The live session behind a cookie and, when it is signed in, its caller.

        Raises:
            SessionStoreUnavailable: the store (Redis, say) did not answer.
        """
        now = datetime.now(UTC)
        try:
            record = await self.sessions.load(hash_session_id(session_id))
            if record is not None and record.is_expired(now):
                await self.sessions.delete(record.key)
                record = None
            elif record is not None and now - record.last_seen_at >= TOUCH_RESOLUTION:
                record.last_seen_at = now
                await self.sessions.save(record)
        except Exception as exc:  # every backend's failure is the same event to callers
            raise SessionStoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if record is None or record.user_id is None:
            return record, None
        user = await self._load_user(int(record.user_id))
        return record, self._identity(user, "session", session=record)

    def _identity(self, user: User, method: Method, **extra: Any) -> Identity:
        _refuse_banned(user)
        return Identity(principal_for(user, self.auth.roles), UserView.of(user), method, **extra)

    async def _load_user(self, user_id: int) -> User:
        user = await anyio.to_thread.run_sync(self._get_user, user_id)
        if user is None or not user.is_active:
            raise BastionError("token_invalid")
        return user

    def _get_user(self, user_id: int) -> User | None:
        # On every authenticated request: a Core select on a pooled connection costs a
        # third of an ORM session's transaction (250 against 690 µs measured on SQLite).
        with self.database.read_engine.connect() as connection:
            row = connection.execute(_USER_BY_ID, {"user_id": user_id}).first()
        return User(**row._mapping) if row is not None else None

    def _api_key(self, presented: str) -> tuple[User, int, frozenset[str]] | None:
        # Read-only first: on SQLite a write transaction per request would queue every
        # API-key call behind the single write lock. The use is recorded once a minute.
        with self.database.read_transaction() as session:
            key = find_api_key(session, presented)
            if key is None:
                return None
            user = session.get(User, key.user_id)
            if user is None or not user.is_active:
                return None
            session.expunge(user)
            found = (user, key.id, frozenset(key.scopes))
            now = datetime.now(UTC)
            stale = needs_touch(key, now)
        if stale:
            with self.database.transaction() as session:
                touch_api_key(session, found[1], now)
        return found

    # -- login ------------------------------------------------------------------------

    async def check_password(self, email: str, password: str) -> User:
        """The user whose email and password these are.

        An unknown email costs one argon2 verification, like a wrong password, and both
        raise the same ``invalid_credentials``: neither time nor body tells them apart.
        A correct password hashed with old parameters is rehashed.

        Raises:
            BastionError: ``invalid_credentials``, or ``account_banned`` (only after
                the password proved the caller owns the account).
        """
        return await anyio.to_thread.run_sync(self._check_password, email, password)

    def _check_password(self, email: str, password: str) -> User:
        try:
            normalized: str | None = normalize_email(email)
        except ValidationFailed:
            normalized = None
        user = None
        if normalized is not None:
            with self.database.read_transaction() as session:
                user = session.scalar(select(User).where(User.email == normalized))
                if user is not None:
                    session.expunge(user)
        # Verified outside any transaction: argon2 takes tens of milliseconds, and on
        # SQLite a write transaction would hold the database's only write lock that long.
        stored = user.password_hash if user is not None else None
        if not self.passwords.verify(stored, password) or user is None or not user.is_active:
            raise BastionError("invalid_credentials")
        _refuse_banned(user)
        if stored is not None and self.passwords.needs_rehash(stored):
            rehashed = self.passwords.hash(password)
            with self.database.transaction() as session:
                session.execute(
                    update(User).where(User.id == user.id).values(password_hash=rehashed)
                )
        return user

    def carried_data(self, previous: SessionRecord | None) -> dict[str, Any]:
        """What a new session holds: the configured defaults, then ``previous``'s data."""
        data: dict[str, Any] = dict(self.auth.session_defaults)
        if previous is not None:
            data.update(previous.data)
        return data

    async def start_session(
        self,
        user_id: int | None,
        *,
        previous: SessionRecord | None = None,
        data: dict[str, Any] | None = None,
    ) -> StartedSession:
        """A new session (new id: no fixation) replacing ``previous``.

        Args:
            user_id: The signed-in user, or ``None`` for an anonymous visitor.
            previous: The browser's current session; it is deleted.
            data: The new session's data; by default :meth:`carried_data` of ``previous``.
        """
        now = datetime.now(UTC)
        data = dict(self.carried_data(previous) if data is None else data)
        if previous is not None:
            await self.sessions.delete(previous.key)
        csrf = secrets.token_urlsafe(32)
        data[CSRF_KEY] = csrf
        session_id = new_session_id()
        record = SessionRecord(
            key=hash_session_id(session_id),
            user_id=str(user_id) if user_id is not None else None,
            data=data,
            created_at=now,
            last_seen_at=now,
            idle_timeout=timedelta(seconds=self.auth.session_idle_timeout_s),
            absolute_timeout=timedelta(seconds=self.auth.session_absolute_timeout_s),
        )
        await self.sessions.save(record)
        return StartedSession(session_id, record, csrf)

    @staticmethod
    def csrf_matches(record: SessionRecord, presented: str | None) -> bool:
        expected = record.data.get(CSRF_KEY)
        if not isinstance(expected, str) or not presented:
            return False
        return hmac.compare_digest(expected.encode(), presented.encode())

    # -- account actions ------------------------------------------------------------

    async def revoke_everything(self, user_id: int) -> dict[str, int]:
        """Sign a user out everywhere: sessions, refresh tokens and API keys.

        Access tokens are not stored; they stop working when the user is banned,
        because every request re-reads the user.
        """

        def revoke_stored() -> dict[str, int]:
            with self.database.transaction() as session:
                return revoke_credentials(session, user_id)

        revoked = await anyio.to_thread.run_sync(revoke_stored)
        revoked["sessions"] = await self.sessions.delete_for_user(str(user_id))
        self.signed_out(user_id)
        return revoked

    async def set_banned(
        self,
        user_id: int,
        banned: bool,
        *,
        actor_id: str,
        reason: str,
        request_id: str | None = None,
    ) -> dict[str, int]:
        """Ban (revoking every credential, in the ban's transaction) or unban a user, with
        an audit-log row; returns what was revoked. Revoked credentials stay revoked.

        Raises:
            NotFound: no such user.
        """

        def run() -> dict[str, int]:
            with self.database.transaction() as session:
                user = session.get(User, user_id)
                if user is None:
                    raise NotFound()
                user.banned_at = datetime.now(UTC) if banned else None
                user.ban_reason = reason if banned else None
                revoked = revoke_credentials(session, user_id) if banned else {}
                audit(
                    session,
                    actor_id=actor_id,
                    action="user.ban" if banned else "user.unban",
                    target_type="user",
                    target_id=user_id,
                    reason=reason,
                    request_id=request_id,
                    **revoked,
                )
                return revoked

        revoked = await anyio.to_thread.run_sync(run)
        if banned:
            revoked["sessions"] = await self.sessions.delete_for_user(str(user_id))
            self.signed_out(user_id)
        return revoked


def revoke_credentials(session: Session, user_id: int) -> dict[str, int]:
    """Revoke a user's stored credentials (refresh tokens, API keys) in ``session``."""
    return {
        "refresh_tokens": Tokens.revoke_user(session, user_id),
        "api_keys": revoke_user_api_keys(session, user_id),
    }


def _refuse_banned(user: User) -> None:
    if user.is_banned:
        raise BastionError("account_banned")


def _session_store(settings: Settings, database: Database) -> tuple[SessionStore, Any]:
    backend = settings.auth.session_backend
    if backend == "memory":
        return InMemorySessionStore(), None
    if backend == "redis":
        if not settings.redis.url:
            raise ValueError("auth.session_backend = 'redis' needs [redis] url")
        import redis.asyncio as redis

        client = redis.Redis.from_url(
            settings.redis.url, socket_connect_timeout=2, socket_timeout=2
        )
        return RedisSessionStore(client, prefix=f"bastion:{settings.app.module or 'app'}:"), client
    return DatabaseSessionStore(database), None
