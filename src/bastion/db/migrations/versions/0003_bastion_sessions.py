"""bastion platform: browser sessions

Revision ID: bastion_0003
Revises: bastion_0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bastion.db.types import UTCDateTime

revision: str = "bastion_0003"
down_revision: str | Sequence[str] | None = "bastion_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bastion_sessions",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("idle_timeout_s", sa.Integer(), nullable=False),
        sa.Column("absolute_timeout_s", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_bastion_sessions")),
    )
    op.create_index(op.f("ix_bastion_sessions_user_id"), "bastion_sessions", ["user_id"])
    op.create_index(op.f("ix_bastion_sessions_expires_at"), "bastion_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_bastion_sessions_expires_at"), table_name="bastion_sessions")
    op.drop_index(op.f("ix_bastion_sessions_user_id"), table_name="bastion_sessions")
    op.drop_table("bastion_sessions")
