"""Client logs: what browsers and mobile apps report of their own errors and logs.

A batch arrives at ``POST {api_prefix}/client-logs`` (``bastion.http.client_log_routes``),
which only validates it and enqueues one :data:`INGEST_JOB` job; the job writes the
rows, scrubbed of secrets. So a burst of client errors (every open tab reporting
the same outage) costs the request path one insert, never a transaction per entry.

Each row keeps the request id and trace id the client saw, so a client error can be
followed into the server's logs and error log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from bastion.context import Context
from bastion.db.tables import utcnow
from bastion.monitoring.tables import ClientLogRow
from bastion.observability import scrub

#: The job that writes a batch (queue ``bastion``).
INGEST_JOB = "bastion.client_logs.ingest"
#: The cron job that deletes old entries.
PURGE_JOB = "bastion.client_logs.purge"

Level = Literal["debug", "info", "warn", "error"]

# Column sizes of ClientLogRow: longer values are cut, not refused.
_AREA_CHARS = 200
_URL_CHARS = 2048
_USER_AGENT_CHARS = 512


class ClientLogEntry(BaseModel):
    """One entry of a batch, as a client sends it."""

    model_config = ConfigDict(extra="forbid")

    level: Level
    message: str
    """Cut to ``[client_logs] max_message_chars``."""
    stack: str | None = None
    """Cut to ``[client_logs] max_stack_chars``."""
    area: str | None = None
    """Where in the client it happened (``checkout``, ``console.jobs``)."""
    url: str | None = None
    """The page or screen."""
    trace_id: str | None = Field(None, pattern=r"^[0-9a-f]{32}$")
    """The W3C trace id of the server call that failed, if any."""
    request_id: str | None = Field(None, max_length=128)
    """The ``X-Request-ID`` of the server call that failed, if any."""
    timestamp: AwareDatetime | None = None
    """When the client logged it (RFC 3339 with a zone, or Unix seconds)."""
    context: dict[str, Any] | None = None
    """Anything else the client wants kept (scrubbed like the rest)."""


class ClientLogBatch(BaseModel):
    """The body of ``POST /client-logs``."""

    model_config = ConfigDict(extra="forbid")

    entries: list[ClientLogEntry] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class ClientLog:
    """One stored entry, as the console and the admin API show it."""

    id: int
    received_at: datetime
    logged_at: datetime | None
    level: str
    message: str
    stack: str | None
    area: str | None
    url: str | None
    user_id: str | None
    client_ip: str | None
    user_agent: str | None
    request_id: str | None
    trace_id: str | None
    context: dict[str, Any] | None


def clip(entry: ClientLogEntry, *, max_message_chars: int, max_stack_chars: int) -> ClientLogEntry:
    """``entry`` with its message and stack cut to the limits."""
    changes: dict[str, Any] = {}
    if len(entry.message) > max_message_chars:
        changes["message"] = entry.message[:max_message_chars]
    if entry.stack is not None and len(entry.stack) > max_stack_chars:
        changes["stack"] = entry.stack[:max_stack_chars]
    return entry.model_copy(update=changes) if changes else entry


def store_batch(
    session: Session,
    entries: list[ClientLogEntry],
    *,
    user_id: str | None,
    client_ip: str | None,
    user_agent: str | None,
    request_id: str | None,
    trace_id: str | None = None,
) -> int:
    """Write a batch's rows, scrubbed; returns how many.

    An entry without a request id (or trace id) of its own gets those of the request
    that posted the batch, so every row leads to some server log line.
    """
    agent = user_agent[:_USER_AGENT_CHARS] if user_agent else None
    session.add_all(
        ClientLogRow(
            logged_at=entry.timestamp,
            level=entry.level,
            message=scrub(entry.message),
            stack=scrub(entry.stack),
            area=entry.area[:_AREA_CHARS] if entry.area else None,
            # Cut after scrubbing: a redaction may lengthen the text past the column.
            url=scrub(entry.url)[:_URL_CHARS] if entry.url else None,
            user_id=user_id,
            client_ip=client_ip,
            user_agent=agent,
            request_id=entry.request_id or request_id,
            trace_id=entry.trace_id or trace_id,
            context=scrub(entry.context) if entry.context is not None else None,
        )
        for entry in entries
    )
    return len(entries)


def ingest(
    ctx: Context,
    entries: list[ClientLogEntry],
    user_id: str | None = None,
    client_ip: str | None = None,
    user_agent: str | None = None,
    request_id: str | None = None,
    trace_id: str | None = None,
) -> int:
    """The ingest job: one batch's rows, written in the job's transaction (exactly once)."""
    return store_batch(
        ctx.session,
        entries,
        user_id=user_id,
        client_ip=client_ip,
        user_agent=user_agent,
        request_id=request_id,
        trace_id=trace_id,
    )


def purge(ctx: Context) -> int:
    """The retention job: delete entries older than ``[client_logs] retention_s``."""
    deleted = purge_client_logs(
        ctx.session, timedelta(seconds=ctx.settings.client_logs.retention_s)
    )
    ctx.log.info("client_logs_purged", deleted=deleted)
    return deleted


def purge_client_logs(session: Session, older_than: timedelta) -> int:
    """Delete entries received longer than ``older_than`` ago; returns how many."""
    result: Any = session.execute(
        delete(ClientLogRow).where(ClientLogRow.received_at < utcnow() - older_than)
    )
    return int(result.rowcount)


def recent_client_logs(
    session: Session, *, after_id: int | None = None, limit: int = 50
) -> list[ClientLog]:
    """The latest entries, newest first; with ``after_id`` only those stored after that
    one (a live tail polls with the highest id it has shown)."""
    statement = select(ClientLogRow).order_by(ClientLogRow.id.desc()).limit(limit)
    if after_id is not None:
        statement = statement.where(ClientLogRow.id > after_id)
    return [client_log(row) for row in session.scalars(statement)]


def client_log(row: ClientLogRow) -> ClientLog:
    """A stored row as a :class:`ClientLog`."""
    return ClientLog(
        id=row.id,
        received_at=row.received_at,
        logged_at=row.logged_at,
        level=row.level,
        message=row.message,
        stack=row.stack,
        area=row.area,
        url=row.url,
        user_id=row.user_id,
        client_ip=row.client_ip,
        user_agent=row.user_agent,
        request_id=row.request_id,
        trace_id=row.trace_id,
        context=row.context,
    )
