"""The tables of webhooks: events received, subscriptions, and the delivery log.

They live in the app's own database (decision 0006) for the same reason jobs do: an
event received is recorded with its processing job, and an event published is
recorded with the mutation that caused it, in one transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from bastion.db.tables import PlatformBase, utcnow
from bastion.db.types import UTCDateTime

#: SQLite only auto-increments an ``INTEGER PRIMARY KEY``; PostgreSQL gets 64 bits.
_BigId = BigInteger().with_variant(Integer(), "sqlite")


class WebhookEventRow(PlatformBase):
    """An inbound event, once per ``(source, event_id)``: senders retry and deliver twice,
    and the unique key is what makes the second delivery a no-op."""

    __tablename__ = "bastion_webhook_events"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(100))
    event_id: Mapped[str] = mapped_column(String(255))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    payload: Mapped[Any] = mapped_column(JSON, nullable=False)
    job_id: Mapped[int | None] = mapped_column(_BigId)
    """The job that processes the event."""

    __table_args__ = (
        UniqueConstraint("source", "event_id"),
        # Purging old events.
        Index("ix_bastion_webhook_events_received_at", "received_at"),
    )


class WebhookSubscriptionRow(PlatformBase):
    """An endpoint that wants some event types, and the secret its deliveries are signed with.

    The secret is stored as is, not hashed: every delivery is signed with it.
    """

    __tablename__ = "bastion_webhook_subscriptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(JSON)
    """Event types (``order.created``), prefixes (``order.*``) or ``*`` for all."""
    secret: Mapped[str] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    """Cleared when the endpoint answers 410 Gone: nothing more is delivered to it."""
    description: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WebhookDeliveryRow(PlatformBase):
    """One event on its way to one subscription: the delivery log.

    ``status``: ``pending`` (no attempt yet), ``failed`` (the last attempt failed and
    another is scheduled, at the latest at ``next_attempt_at``), ``succeeded`` or
    ``dead`` (given up). The ``last_*`` columns describe the latest attempt.
    """

    __tablename__ = "bastion_webhook_deliveries"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    subscription_id: Mapped[int] = mapped_column(
        # Named here: the convention's name is past PostgreSQL's 63 characters.
        ForeignKey(
            "bastion_webhook_subscriptions.id",
            ondelete="CASCADE",
            name="fk_bastion_webhook_deliveries_subscription",
        )
    )
    event_type: Mapped[str] = mapped_column(String(100))
    event_id: Mapped[str] = mapped_column(String(64), index=True)
    payload: Mapped[Any] = mapped_column(JSON, nullable=False)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_duration_ms: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[int | None] = mapped_column(_BigId)
    """The job making the attempts (the latest one, after a redelivery)."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        # The delivery log of one subscription, newest first (and the cascading delete).
        Index("ix_bastion_webhook_deliveries_subscription", "subscription_id", "id"),
        # The whole log by status (dead deliveries to look at), newest first.
        Index("ix_bastion_webhook_deliveries_status", "status", "id"),
    )
