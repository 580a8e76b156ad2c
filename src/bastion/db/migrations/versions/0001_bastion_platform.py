"""bastion platform tables: error log and meta

Revision ID: bastion_0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "bastion_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("bastion",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bastion_error_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=10), nullable=False),
        sa.Column("path", sa.String(length=2048), nullable=False),
        sa.Column("route", sa.String(length=512), nullable=True),
        sa.Column("user_id", sa.String(length=64), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bastion_error_log")),
    )
    op.create_index(op.f("ix_bastion_error_log_code"), "bastion_error_log", ["code"])
    op.create_index(op.f("ix_bastion_error_log_created_at"), "bastion_error_log", ["created_at"])
    op.create_index(op.f("ix_bastion_error_log_request_id"), "bastion_error_log", ["request_id"])
    op.create_index(op.f("ix_bastion_error_log_route"), "bastion_error_log", ["route"])
    op.create_table(
        "bastion_meta",
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_bastion_meta")),
    )


def downgrade() -> None:
    op.drop_table("bastion_meta")
    op.drop_index(op.f("ix_bastion_error_log_route"), table_name="bastion_error_log")
    op.drop_index(op.f("ix_bastion_error_log_request_id"), table_name="bastion_error_log")
    op.drop_index(op.f("ix_bastion_error_log_created_at"), table_name="bastion_error_log")
    op.drop_index(op.f("ix_bastion_error_log_code"), table_name="bastion_error_log")
    op.drop_table("bastion_error_log")
