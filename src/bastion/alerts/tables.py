"""Alert rules' current state and their history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bastion.db.tables import PlatformBase, utcnow
from bastion.db.types import UTCDateTime


class AlertStateRow(PlatformBase):
    """Where one configured rule stands: ``ok`` or ``firing`` since ``since``.

    ``last_notified_at`` is what the cooldown counts from.
    """

    __tablename__ = "bastion_alerts"

    rule: Mapped[str] = mapped_column(String(100), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    value: Mapped[float | None] = mapped_column(Float)
    since: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    evaluated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AlertEventRow(PlatformBase):
    """A rule fired, fired again after its cooldown, or resolved; and who was told."""

    __tablename__ = "bastion_alert_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule: Mapped[str] = mapped_column(String(100), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    message: Mapped[str] = mapped_column(Text)
    notified: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
