"""Sessions in the app's database (the default: zero setup, shared by every process)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import anyio.to_thread
from sqlalchemy import JSON, Integer, String, delete
from sqlalchemy.orm import Mapped, mapped_column

from bastion.auth.sessions.base import SessionRecord
from bastion.db.database import Database
from bastion.db.tables import PlatformBase
from bastion.db.types import UTCDateTime


class SessionRow(PlatformBase):
    __tablename__ = "bastion_sessions"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    idle_timeout_s: Mapped[int] = mapped_column(Integer)
    absolute_timeout_s: Mapped[int] = mapped_column(Integer)


class DatabaseSessionStore:
    """One row per session; ``expires_at`` is indexed for the purge job (#4)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def save(self, record: SessionRecord) -> None:
        await anyio.to_thread.run_sync(self._save, record)

    def _save(self, record: SessionRecord) -> None:
        with self.database.transaction() as session:
            session.merge(
                SessionRow(
                    key=record.key,
                    user_id=record.user_id,
                    data=record.data,
                    created_at=record.created_at,
                    last_seen_at=record.last_seen_at,
                    expires_at=record.expires_at(),
                    idle_timeout_s=int(record.idle_timeout.total_seconds()),
                    absolute_timeout_s=int(record.absolute_timeout.total_seconds()),
                )
            )

    async def load(self, key: str) -> SessionRecord | None:
        return await anyio.to_thread.run_sync(self._load, key)

    def _load(self, key: str) -> SessionRecord | None:
        with self.database.read_transaction() as session:
            row = session.get(SessionRow, key)
            if row is None:
                return None
            return SessionRecord(
                key=row.key,
                user_id=row.user_id,
                data=dict(row.data or {}),
                created_at=row.created_at,
                last_seen_at=row.last_seen_at,
                idle_timeout=timedelta(seconds=row.idle_timeout_s),
                absolute_timeout=timedelta(seconds=row.absolute_timeout_s),
            )

    async def delete(self, key: str) -> None:
        await anyio.to_thread.run_sync(self._delete, SessionRow.key == key)

    async def delete_for_user(self, user_id: str) -> int:
        return await anyio.to_thread.run_sync(self._delete, SessionRow.user_id == user_id)

    def purge_expired(self, now: datetime) -> int:
        """Delete sessions past their deadline (they are already refused when presented)."""
        return self._delete(SessionRow.expires_at <= now)

    def _delete(self, condition: Any) -> int:
        with self.database.transaction() as session:
            result = session.execute(delete(SessionRow).where(condition))
            return int(result.rowcount)  # type: ignore[attr-defined]
