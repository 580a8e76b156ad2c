"""API tokens: short-lived JWT access tokens and rotating, opaque refresh tokens.

Access tokens are HMAC-signed JWTs with a pinned algorithm; ``exp``, ``iat``,
``iss``, ``aud``, ``jti`` and ``sub`` are required, so an ``alg: none`` token, a
token signed with another algorithm (key confusion) or for another audience is
refused. They are not stored: the auth middleware still loads the user on every
request, so a ban takes effect on the very next one.

Refresh tokens are random strings of which only a SHA-256 hash is stored. Each
use rotates it: the presented token is marked used and a new one of the same
*family* is issued. Presenting a used token again means it was copied, so the
whole family is revoked (``token_reused``) and the thief's copy dies with the
owner's.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from sqlalchemy import ForeignKey, Integer, String, delete, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from bastion.auth.users import User
from bastion.db.tables import PlatformBase, utcnow
from bastion.db.types import UTCDateTime
from bastion.errors import BastionError
from bastion.settings.sections import AuthSection

#: How many verified access tokens each process remembers (oldest forgotten first).
VERIFIED_CACHE_SIZE = 10_000


class RefreshToken(PlatformBase):
    __tablename__ = "bastion_refresh_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family_id: Mapped[str] = mapped_column(String(32), index=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("bastion_users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """Set when rotated; a second use of the same token is reuse."""
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "bearer"


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: int
    jti: str
    expires_at: datetime


class TokenReused(BastionError):
    """A rotated refresh token came back: its family is revoked (committed before raising)."""

    code = "token_reused"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Tokens:
    """Issues and checks tokens with the ``[auth]`` settings.

    Args:
        settings: The ``[auth]`` section.
        fallback_secret: ``app.secret_key``, used when ``auth.jwt_secret`` is unset.
    """

    def __init__(self, settings: AuthSection, fallback_secret: str) -> None:
        self.settings = settings
        self._key = (
            settings.jwt_secret.get_secret_value() if settings.jwt_secret else fallback_secret
        )
        self._algorithms = [settings.jwt_algorithm]
        self._verified: dict[str, AccessClaims] = {}

    def access_token(self, user_id: int, now: datetime | None = None) -> tuple[str, int]:
        """A signed access token for ``user_id`` and its lifetime in seconds."""
        issued = now or datetime.now(UTC)
        ttl = self.settings.access_token_ttl_s
        claims = {
            "sub": str(user_id),
            "iat": issued,
            "nbf": issued,
            "exp": issued + timedelta(seconds=ttl),
            "iss": self.settings.jwt_issuer,
            "aud": self.settings.jwt_audience,
            "jti": secrets.token_urlsafe(16),
        }
        return jwt.encode(claims, self._key, algorithm=self.settings.jwt_algorithm), ttl

    def verify_access(self, token: str) -> AccessClaims:
        """The claims of a valid access token.

        Raises:
            BastionError: ``token_expired`` past ``exp``; ``token_invalid`` for anything else
                (bad signature, other algorithm, wrong issuer or audience, missing claims).
        """
        # A client sends the same token with every request for up to 15 minutes; checking
        # its signature once saves ~100 µs per request. Only tokens that verified are
        # remembered, and their expiry is still checked on every use.
        cached = self._verified.get(token)
        if cached is not None:
            if cached.expires_at > datetime.now(UTC):
                return cached
            del self._verified[token]
        claims = self._decode(token)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.pop(next(iter(self._verified)))
        self._verified[token] = claims
        return claims

    def _decode(self, token: str) -> AccessClaims:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                audience=self.settings.jwt_audience,
                issuer=self.settings.jwt_issuer,
                options={"require": ["exp", "iat", "iss", "aud", "jti", "sub"]},
                leeway=5,
            )
            user_id = int(claims["sub"])
        except jwt.ExpiredSignatureError:
            raise BastionError("token_expired", headers=_challenge("invalid_token")) from None
        except (jwt.InvalidTokenError, ValueError, TypeError):
            raise BastionError("token_invalid", headers=_challenge("invalid_token")) from None
        return AccessClaims(
            user_id=user_id,
            jti=str(claims["jti"]),
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        )

    def issue(self, session: Session, user: User, *, family_id: str | None = None) -> TokenPair:
        """A new access token and a refresh token (of a new family unless one is given)."""
        now = datetime.now(UTC)
        refresh = secrets.token_urlsafe(32)
        session.add(
            RefreshToken(
                token_hash=_hash(refresh),
                family_id=family_id or secrets.token_hex(16),
                user_id=user.id,
                created_at=now,
                expires_at=now + timedelta(seconds=self.settings.refresh_token_ttl_s),
            )
        )
        session.flush()
        access, ttl = self.access_token(user.id, now)
        return TokenPair(access_token=access, refresh_token=refresh, expires_in=ttl)

    def rotate(self, session: Session, refresh_token: str) -> TokenPair | TokenReused:
        """Exchange a refresh token for a new pair.

        Returns ``TokenReused`` (instead of raising) when the token was already used: the
        family's revocation must be committed, so the caller commits, then raises it.

        Raises:
            BastionError: ``token_invalid`` (unknown, expired or revoked token),
                ``account_banned``.
        """
        now = datetime.now(UTC)
        row = session.scalar(
            select(RefreshToken).where(RefreshToken.token_hash == _hash(refresh_token))
        )
        if row is None or row.revoked_at is not None or row.expires_at <= now:
            raise BastionError("token_invalid")
        # The conditional update is the race guard: of two concurrent uses, one wins.
        claimed = session.execute(
            update(RefreshToken)
            .where(RefreshToken.id == row.id, RefreshToken.used_at.is_(None))
            .values(used_at=now)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            self.revoke_family(session, row.family_id, now)
            return TokenReused()
        user = session.get(User, row.user_id)
        if user is None or not user.is_active:
            raise BastionError("token_invalid")
        if user.is_banned:
            raise BastionError("account_banned")
        return self.issue(session, user, family_id=row.family_id)

    def revoke(self, session: Session, refresh_token: str, *, user_id: int | None = None) -> bool:
        """Revoke the family of ``refresh_token`` (only if it belongs to ``user_id`` when given)."""
        row = session.scalar(
            select(RefreshToken).where(RefreshToken.token_hash == _hash(refresh_token))
        )
        if row is None or (user_id is not None and row.user_id != user_id):
            return False
        self.revoke_family(session, row.family_id, datetime.now(UTC))
        return True

    @staticmethod
    def revoke_family(session: Session, family_id: str, now: datetime) -> None:
        session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    @staticmethod
    def purge_expired(session: Session, now: datetime) -> int:
        """Delete refresh tokens past their expiry; revoked ones go when they expire too,
        so reuse of a recently revoked token is still recognised until then."""
        result = session.execute(delete(RefreshToken).where(RefreshToken.expires_at <= now))
        return int(result.rowcount)  # type: ignore[attr-defined]

    @staticmethod
    def revoke_user(session: Session, user_id: int) -> int:
        """Revoke every refresh token of a user (ban, password change); returns how many."""
        result = session.execute(
            update(RefreshToken)
            .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        return int(result.rowcount)  # type: ignore[attr-defined]


def _challenge(error: str) -> dict[str, str]:
    return {"WWW-Authenticate": f'Bearer error="{error}"'}
