"""bastion platform: OIDC identities linked to users

Revision ID: bastion_0006
Revises: bastion_0005
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bastion.db.types import UTCDateTime

revision: str = "bastion_0006"
down_revision: str | Sequence[str] | None = "bastion_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bastion_user_identities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["bastion_users.id"],
            name=op.f("fk_bastion_user_identities_user_id_bastion_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bastion_user_identities")),
        sa.UniqueConstraint(
            "provider", "subject", name=op.f("uq_bastion_user_identities_provider")
        ),
    )
    op.create_index(
        op.f("ix_bastion_user_identities_user_id"), "bastion_user_identities", ["user_id"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_bastion_user_identities_user_id"), table_name="bastion_user_identities")
    op.drop_table("bastion_user_identities")
