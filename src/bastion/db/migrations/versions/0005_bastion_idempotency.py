"""bastion platform: idempotency keys

Revision ID: bastion_0005
Revises: bastion_0004
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bastion.db.types import UTCDateTime

revision: str = "bastion_0005"
down_revision: str | Sequence[str] | None = "bastion_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bastion_idempotency_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=128), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("headers", sa.JSON(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("locked_until", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bastion_idempotency_keys")),
        sa.UniqueConstraint("scope", "key", name=op.f("uq_bastion_idempotency_keys_scope")),
    )
    op.create_index(
        op.f("ix_bastion_idempotency_keys_expires_at"),
        "bastion_idempotency_keys",
        ["expires_at"],
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_bastion_idempotency_keys_expires_at"), table_name="bastion_idempotency_keys"
    )
    op.drop_table("bastion_idempotency_keys")
