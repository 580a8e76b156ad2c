"""bastion platform: uploaded files

Revision ID: bastion_0010
Revises: bastion_0009
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bastion.db.types import UTCDateTime

revision: str = "bastion_0010"
down_revision: str | Sequence[str] | None = "bastion_0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bastion_files",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("storage_key", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=True),
        sa.Column("access", sa.String(length=16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bastion_files")),
        sa.UniqueConstraint("storage_key", name=op.f("uq_bastion_files_storage_key")),
    )
    op.create_index(op.f("ix_bastion_files_owner_id"), "bastion_files", ["owner_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_bastion_files_owner_id"), table_name="bastion_files")
    op.drop_table("bastion_files")
