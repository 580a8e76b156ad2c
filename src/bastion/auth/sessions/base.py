"""The session store seam: server-side browser sessions with idle and absolute expiry.

Only a hash of the session id is stored, so a leaked store (a database dump, a
Redis snapshot) does not hand out live sessions.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol


def new_session_id() -> str:
    """A fresh, unguessable session id (256 bits)."""
    return secrets.token_urlsafe(32)


def hash_session_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass
class SessionRecord:
    """One session. ``data`` is small per-visitor state (preferences, an anonymous cart)."""

    key: str
    """The hash of the session id: what stores keep and look up."""
    user_id: str | None
    data: dict[str, Any]
    created_at: datetime
    last_seen_at: datetime
    idle_timeout: timedelta = field(default=timedelta(hours=12))
    absolute_timeout: timedelta = field(default=timedelta(days=14))

    def expires_at(self) -> datetime:
        """The earlier of the idle and the absolute deadline."""
        return min(self.last_seen_at + self.idle_timeout, self.created_at + self.absolute_timeout)

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires_at()


class SessionStore(Protocol):
    """Where sessions live. Every backend passes ``tests/contract/test_session_stores.py``."""

    async def save(self, record: SessionRecord) -> None:
        """Insert or replace a session."""

    async def load(self, key: str) -> SessionRecord | None:
        """The session under ``key``, or ``None`` when missing (expiry is the caller's check)."""

    async def delete(self, key: str) -> None:
        """Remove one session (logout, or a new id at login)."""

    async def delete_for_user(self, user_id: str) -> int:
        """Remove every session of a user (ban, password change); returns how many."""
