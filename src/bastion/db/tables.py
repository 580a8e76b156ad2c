"""Bastion's own tables. Apps keep theirs in their own MetaData."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, Integer, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bastion.db.types import UTCDateTime

#: Constraint names Alembic can rely on (SQLite batch migrations need named constraints).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class PlatformBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ErrorLogEntry(PlatformBase):
    """One 5xx (or configured 4xx) error, grouped later by code and route."""

    __tablename__ = "bastion_error_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    code: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[int] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(10))
    path: Mapped[str] = mapped_column(String(2048))
    route: Mapped[str | None] = mapped_column(String(512), index=True)
    user_id: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128), index=True)
    trace_id: Mapped[str | None] = mapped_column(String(32), index=True)
    detail: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, object] | None] = mapped_column(JSON)


class MetaEntry(PlatformBase):
    """Small key/value facts about the database itself (e.g. that demo data was seeded)."""

    __tablename__ = "bastion_meta"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


platform_metadata = PlatformBase.metadata
