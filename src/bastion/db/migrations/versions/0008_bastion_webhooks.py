"""bastion platform: webhook events received, subscriptions, deliveries

Revision ID: bastion_0008
Revises: bastion_0007
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bastion.db.types import UTCDateTime

revision: str = "bastion_0008"
down_revision: str | Sequence[str] | None = "bastion_0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "bastion_webhook_events",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("job_id", BigId, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bastion_webhook_events")),
        sa.UniqueConstraint("source", "event_id", name=op.f("uq_bastion_webhook_events_source")),
    )
    op.create_index(
        "ix_bastion_webhook_events_received_at", "bastion_webhook_events", ["received_at"]
    )
    op.create_table(
        "bastion_webhook_subscriptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bastion_webhook_subscriptions")),
    )
    op.create_table(
        "bastion_webhook_deliveries",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_duration_ms", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("job_id", BigId, nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["bastion_webhook_subscriptions.id"],
            name="fk_bastion_webhook_deliveries_subscription",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bastion_webhook_deliveries")),
    )
    op.create_index(
        op.f("ix_bastion_webhook_deliveries_event_id"), "bastion_webhook_deliveries", ["event_id"]
    )
    op.create_index(
        "ix_bastion_webhook_deliveries_subscription",
        "bastion_webhook_deliveries",
        ["subscription_id", "id"],
    )
    op.create_index(
        "ix_bastion_webhook_deliveries_status", "bastion_webhook_deliveries", ["status", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_bastion_webhook_deliveries_status", table_name="bastion_webhook_deliveries")
    op.drop_index(
        "ix_bastion_webhook_deliveries_subscription", table_name="bastion_webhook_deliveries"
    )
    op.drop_index(
        op.f("ix_bastion_webhook_deliveries_event_id"), table_name="bastion_webhook_deliveries"
    )
    op.drop_table("bastion_webhook_deliveries")
    op.drop_table("bastion_webhook_subscriptions")
    op.drop_index("ix_bastion_webhook_events_received_at", table_name="bastion_webhook_events")
    op.drop_table("bastion_webhook_events")
