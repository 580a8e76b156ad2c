"""bastion platform: jobs, queue token buckets, cron fire records

Revision ID: bastion_0007
Revises: bastion_0006
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bastion.db.types import UTCDateTime

revision: str = "bastion_0007"
down_revision: str | Sequence[str] | None = "bastion_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JobId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "bastion_jobs",
        sa.Column("id", JobId, autoincrement=True, nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("handler", sa.String(length=220), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("run_at", UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("timeout_s", sa.Float(), nullable=True),
        sa.Column("dedup_key", sa.String(length=255), nullable=True),
        sa.Column("claim_token", sa.String(length=32), nullable=True),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("worker", sa.String(length=128), nullable=True),
        sa.Column("progress", sa.JSON(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bastion_jobs")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_bastion_jobs_dedup_key")),
    )
    op.create_index(
        "ix_bastion_jobs_claim", "bastion_jobs", ["status", "queue", "priority", "run_at"]
    )
    op.create_index("ix_bastion_jobs_lease", "bastion_jobs", ["status", "lease_until"])
    op.create_index("ix_bastion_jobs_name", "bastion_jobs", ["name"])
    op.create_table(
        "bastion_job_queues",
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("refilled_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("queue", name=op.f("pk_bastion_job_queues")),
    )
    op.create_table(
        "bastion_cron_fires",
        sa.Column("schedule", sa.String(length=200), nullable=False),
        sa.Column("fire_time", UTCDateTime(), nullable=False),
        sa.Column("job_id", JobId, nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("schedule", "fire_time", name=op.f("pk_bastion_cron_fires")),
    )


def downgrade() -> None:
    op.drop_table("bastion_cron_fires")
    op.drop_table("bastion_job_queues")
    op.drop_index("ix_bastion_jobs_name", table_name="bastion_jobs")
    op.drop_index("ix_bastion_jobs_lease", table_name="bastion_jobs")
    op.drop_index("ix_bastion_jobs_claim", table_name="bastion_jobs")
    op.drop_table("bastion_jobs")
