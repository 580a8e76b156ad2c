"""What the running app records about itself, in its own database: per-minute request
statistics (charts and alert rules read them, whichever process served the requests)
and the logs browsers and mobile apps send."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bastion.db.tables import PlatformBase, utcnow
from bastion.db.types import UTCDateTime


class RequestStatsRow(PlatformBase):
    """Requests of one route and method served by one process in one minute.

    Processes flush their counts every few seconds as new rows (no upserts, so no
    contention between processes); readers sum the rows of a minute.
    ``latency_buckets`` counts requests per upper bound of
    ``bastion.observability.metrics.LATENCY_BUCKETS_S`` (the last count is +Inf).
    """

    __tablename__ = "bastion_request_stats"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    minute: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    process: Mapped[str] = mapped_column(String(64))
    route: Mapped[str] = mapped_column(String(512))
    method: Mapped[str] = mapped_column(String(10))
    requests: Mapped[int] = mapped_column(Integer)
    errors: Mapped[int] = mapped_column(Integer)
    client_errors: Mapped[int] = mapped_column(Integer)
    latency_ms_sum: Mapped[float] = mapped_column(Float)
    latency_buckets: Mapped[list[int]] = mapped_column(JSON)


class ClientLogRow(PlatformBase):
    """One log entry or error sent by a browser or mobile app (``POST /client-logs``)."""

    __tablename__ = "bastion_client_logs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    logged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    level: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    stack: Mapped[str | None] = mapped_column(Text)
    area: Mapped[str | None] = mapped_column(String(200))
    url: Mapped[str | None] = mapped_column(String(2048))
    user_id: Mapped[str | None] = mapped_column(String(64), index=True)
    client_ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    request_id: Mapped[str | None] = mapped_column(String(128), index=True)
    trace_id: Mapped[str | None] = mapped_column(String(32), index=True)
    context: Mapped[dict[str, Any] | None] = mapped_column(JSON)
