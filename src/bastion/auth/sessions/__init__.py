"""Server-side browser sessions: the store Protocol and its backends."""

from __future__ import annotations

from bastion.auth.sessions.base import (
    SessionRecord,
    SessionStore,
    hash_session_id,
    new_session_id,
)
from bastion.auth.sessions.database import DatabaseSessionStore
from bastion.auth.sessions.memory import InMemorySessionStore
from bastion.auth.sessions.redis import RedisSessionStore

__all__ = [
    "DatabaseSessionStore",
    "InMemorySessionStore",
    "RedisSessionStore",
    "SessionRecord",
    "SessionStore",
    "hash_session_id",
    "new_session_id",
]
