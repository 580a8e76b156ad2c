"""bastion platform: refresh tokens, API keys, audit log

Revision ID: bastion_0004
Revises: bastion_0003
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bastion.db.types import UTCDateTime

revision: str = "bastion_0004"
down_revision: str | Sequence[str] | None = "bastion_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bastion_refresh_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("family_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["bastion_users.id"],
            name=op.f("fk_bastion_refresh_tokens_user_id_bastion_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bastion_refresh_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_bastion_refresh_tokens_token_hash")),
    )
    op.create_index(
        op.f("ix_bastion_refresh_tokens_family_id"), "bastion_refresh_tokens", ["family_id"]
    )
    op.create_index(
        op.f("ix_bastion_refresh_tokens_user_id"), "bastion_refresh_tokens", ["user_id"]
    )
    op.create_table(
        "bastion_api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_used_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["bastion_users.id"],
            name=op.f("fk_bastion_api_keys_user_id_bastion_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bastion_api_keys")),
        sa.UniqueConstraint("public_id", name=op.f("uq_bastion_api_keys_public_id")),
    )
    op.create_index(op.f("ix_bastion_api_keys_user_id"), "bastion_api_keys", ["user_id"])
    op.create_table(
        "bastion_audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("target_type", sa.String(length=50), nullable=False),
        sa.Column("target_id", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bastion_audit_log")),
    )
    op.create_index(op.f("ix_bastion_audit_log_created_at"), "bastion_audit_log", ["created_at"])
    op.create_index(op.f("ix_bastion_audit_log_actor_id"), "bastion_audit_log", ["actor_id"])
    op.create_index(op.f("ix_bastion_audit_log_action"), "bastion_audit_log", ["action"])


def downgrade() -> None:
    op.drop_table("bastion_audit_log")
    op.drop_table("bastion_api_keys")
    op.drop_table("bastion_refresh_tokens")
