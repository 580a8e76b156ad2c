"""Error groups: the error log (``bastion_error_log``) summed up by code and route.

One failing route fills the log with rows that differ only in their request id; an
operator wants to see it once, with how often and since when, and one request id to
follow into the logs. The latest row of a group is its sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, delete, func, select
from sqlalchemy.orm import Session

from bastion.db.tables import ErrorLogEntry, utcnow


@dataclass(frozen=True, slots=True)
class ErrorGroup:
    """Errors of one code on one route (``route`` is ``None`` for unmatched paths)."""

    code: str
    route: str | None
    status: int
    """The status of the latest error."""
    count: int
    first_seen: datetime
    last_seen: datetime
    request_id: str | None
    """The latest error's request id: follow it into the server's logs."""
    trace_id: str | None
    method: str
    path: str
    """The latest error's method and path (a route template names many paths)."""
    detail: str | None


@dataclass(frozen=True, slots=True)
class ErrorRecord:
    """One row of the error log."""

    id: int
    created_at: datetime
    code: str
    status: int
    method: str
    path: str
    route: str | None
    user_id: str | None
    request_id: str | None
    trace_id: str | None
    detail: str | None


def error_groups(
    session: Session, *, since: datetime | None = None, limit: int = 100, offset: int = 0
) -> list[ErrorGroup]:
    """Groups of errors logged at or after ``since`` (all without it), most recently
    seen first."""
    grouped = _grouped(since).subquery()
    latest = ErrorLogEntry
    rows = session.execute(
        select(grouped, latest)
        .join(latest, latest.id == grouped.c.latest_id)
        .order_by(grouped.c.last_seen.desc(), grouped.c.latest_id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return [
        ErrorGroup(
            code=row.ErrorLogEntry.code,
            route=row.ErrorLogEntry.route,
            status=row.ErrorLogEntry.status,
            count=int(row.occurrences),
            first_seen=row.first_seen,
            last_seen=row.last_seen,
            request_id=row.ErrorLogEntry.request_id,
            trace_id=row.ErrorLogEntry.trace_id,
            method=row.ErrorLogEntry.method,
            path=row.ErrorLogEntry.path,
            detail=row.ErrorLogEntry.detail,
        )
        for row in rows
    ]


def count_error_groups(session: Session, *, since: datetime | None = None) -> int:
    """How many groups :func:`error_groups` would list without a limit."""
    grouped = _grouped(since).subquery()
    return int(session.scalar(select(func.count()).select_from(grouped)) or 0)


def recent_errors(
    session: Session, *, after_id: int | None = None, limit: int = 50
) -> list[ErrorRecord]:
    """The latest errors, newest first; with ``after_id`` only those logged after that
    one (a live tail polls with the highest id it has shown)."""
    statement = select(ErrorLogEntry).order_by(ErrorLogEntry.id.desc()).limit(limit)
    if after_id is not None:
        statement = statement.where(ErrorLogEntry.id > after_id)
    return [
        ErrorRecord(
            id=row.id,
            created_at=row.created_at,
            code=row.code,
            status=row.status,
            method=row.method,
            path=row.path,
            route=row.route,
            user_id=row.user_id,
            request_id=row.request_id,
            trace_id=row.trace_id,
            detail=row.detail,
        )
        for row in session.scalars(statement)
    ]


def purge_error_log(session: Session, older_than: timedelta) -> int:
    """Delete errors logged longer than ``older_than`` ago; returns how many."""
    result: Any = session.execute(
        delete(ErrorLogEntry).where(ErrorLogEntry.created_at < utcnow() - older_than)
    )
    return int(result.rowcount)


def _grouped(since: datetime | None) -> Select[int, int, datetime, datetime]:
    # Grouped by code and route; the highest id of a group is its latest row. Errors
    # on no route (unmatched paths) share a NULL route, which GROUP BY keeps together.
    statement = select(
        func.max(ErrorLogEntry.id).label("latest_id"),
        func.count().label("occurrences"),
        func.min(ErrorLogEntry.created_at).label("first_seen"),
        func.max(ErrorLogEntry.created_at).label("last_seen"),
    ).group_by(ErrorLogEntry.code, ErrorLogEntry.route)
    if since is not None:
        statement = statement.where(ErrorLogEntry.created_at >= since)
    return statement
