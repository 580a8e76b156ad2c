"""bastion platform: observability (request statistics, client logs, alerts, trace context)

Revision ID: bastion_0011
Revises: bastion_0010
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bastion.db.types import UTCDateTime

revision: str = "bastion_0011"
down_revision: str | Sequence[str] | None = "bastion_0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bastion_request_stats",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("minute", UTCDateTime(), nullable=False),
        sa.Column("process", sa.String(length=64), nullable=False),
        sa.Column("route", sa.String(length=512), nullable=False),
        sa.Column("method", sa.String(length=10), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("client_errors", sa.Integer(), nullable=False),
        sa.Column("latency_ms_sum", sa.Float(), nullable=False),
        sa.Column("latency_buckets", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bastion_request_stats")),
    )
    op.create_index(op.f("ix_bastion_request_stats_minute"), "bastion_request_stats", ["minute"])
    op.create_table(
        "bastion_client_logs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("logged_at", UTCDateTime(), nullable=True),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("stack", sa.Text(), nullable=True),
        sa.Column("area", sa.String(length=200), nullable=True),
        sa.Column("url", sa.String(length=2048), nullable=True),
        sa.Column("user_id", sa.String(length=64), nullable=True),
        sa.Column("client_ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=512), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("trace_id", sa.String(length=32), nullable=True),
        sa.Column("context", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bastion_client_logs")),
    )
    for column in ("received_at", "user_id", "request_id", "trace_id"):
        op.create_index(op.f(f"ix_bastion_client_logs_{column}"), "bastion_client_logs", [column])
    op.create_table(
        "bastion_alerts",
        sa.Column("rule", sa.String(length=100), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("since", UTCDateTime(), nullable=False),
        sa.Column("evaluated_at", UTCDateTime(), nullable=False),
        sa.Column("last_notified_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("rule", name=op.f("pk_bastion_alerts")),
    )
    op.create_table(
        "bastion_alert_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("notified", sa.JSON(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bastion_alert_events")),
    )
    op.create_index(op.f("ix_bastion_alert_events_rule"), "bastion_alert_events", ["rule"])
    op.create_index(
        op.f("ix_bastion_alert_events_created_at"), "bastion_alert_events", ["created_at"]
    )
    op.add_column("bastion_jobs", sa.Column("trace_context", sa.String(length=64), nullable=True))
    op.add_column(
        "bastion_workflows", sa.Column("trace_context", sa.String(length=64), nullable=True)
    )
    op.add_column("bastion_error_log", sa.Column("trace_id", sa.String(length=32), nullable=True))
    op.create_index(op.f("ix_bastion_error_log_trace_id"), "bastion_error_log", ["trace_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_bastion_error_log_trace_id"), table_name="bastion_error_log")
    with op.batch_alter_table("bastion_error_log") as batch:
        batch.drop_column("trace_id")
    with op.batch_alter_table("bastion_workflows") as batch:
        batch.drop_column("trace_context")
    with op.batch_alter_table("bastion_jobs") as batch:
        batch.drop_column("trace_context")
    op.drop_table("bastion_alert_events")
    op.drop_table("bastion_alerts")
    op.drop_table("bastion_client_logs")
    op.drop_table("bastion_request_stats")
