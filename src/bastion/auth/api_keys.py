"""API keys for scripts and servers: ``X-API-Key: bk_<id>_<secret>``.

The full key is shown once, at creation. Only a SHA-256 hash of the secret is
stored: the secret is 256 random bits, so a slow password hash would add cost
without adding safety. The public id finds the row in one indexed lookup.

A key carries scopes, and its caller gets the scopes its owner's roles still
grant: a key can never do more than the person who made it, even after their
roles shrink.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import JSON, ForeignKey, Integer, String, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from bastion.auth.users import User
from bastion.db.tables import PlatformBase, utcnow
from bastion.db.types import UTCDateTime
from bastion.errors import FieldError, NotFound, ValidationFailed

#: ``last_used_at`` is written at most this often per key, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiKey(PlatformBase):
    __tablename__ = "bastion_api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(16), unique=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("bastion_users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


@dataclass(frozen=True, slots=True)
class NewApiKey:
    """A just-created key: ``key`` is the only time the secret is available."""

    record: ApiKey
    key: str


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(
    session: Session,
    user: User,
    *,
    name: str,
    scopes: Iterable[str],
    grantable: Iterable[str],
    prefix: str = "bk",
) -> NewApiKey:
    """Make a key for ``user`` with ``scopes``, each of which the user must hold.

    Raises:
        ValidationFailed: a scope the user's roles do not grant (field code ``unknown_scope``).
    """
    wanted = sorted(set(scopes))
    allowed = set(grantable)
    for index, scope in enumerate(wanted):
        if scope not in allowed:
            raise ValidationFailed(
                errors=[FieldError(f"scopes[{index}]", "unknown_scope", params={"scope": scope})]
            )
    public_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    record = ApiKey(
        public_id=public_id,
        user_id=user.id,
        name=name,
        secret_hash=_hash(secret),
        scopes=wanted,
    )
    session.add(record)
    session.flush()
    return NewApiKey(record=record, key=f"{prefix}_{public_id}_{secret}")


def list_api_keys(session: Session, user_id: int) -> list[ApiKey]:
    """The user's live keys, newest first."""
    return list(
        session.scalars(
            select(ApiKey)
            .where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
            .order_by(ApiKey.id.desc())
        )
    )


def revoke_api_key(session: Session, user_id: int, key_id: int) -> None:
    """Revoke one of the user's keys; someone else's key is ``not_found`` (no existence leak)."""
    result = session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise NotFound()


def revoke_user_api_keys(session: Session, user_id: int) -> int:
    result = session.execute(
        update(ApiKey)
        .where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def find_api_key(session: Session, presented: str) -> ApiKey | None:
    """The live key ``presented`` stands for, or ``None`` (read-only; see :func:`touch_api_key`)."""
    parts = presented.split("_", 2)
    if len(parts) != 3:
        return None
    _, public_id, secret = parts
    record = session.scalar(select(ApiKey).where(ApiKey.public_id == public_id))
    if record is None or record.revoked_at is not None:
        return None
    if not hmac.compare_digest(record.secret_hash, _hash(secret)):
        return None
    return record


def needs_touch(record: ApiKey, now: datetime) -> bool:
    """Whether ``last_used_at`` is stale enough to be written (once a minute at most)."""
    return record.last_used_at is None or now - record.last_used_at >= LAST_USED_RESOLUTION


def touch_api_key(session: Session, key_id: int, now: datetime) -> None:
    """Record a use; conditional, so concurrent requests write it once."""
    session.execute(
        update(ApiKey)
        .where(
            ApiKey.id == key_id,
            (ApiKey.last_used_at.is_(None)) | (ApiKey.last_used_at < now - LAST_USED_RESOLUTION),
        )
        .values(last_used_at=now)
    )
