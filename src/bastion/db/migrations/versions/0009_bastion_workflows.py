"""bastion platform: workflow runs and step checkpoints

Revision ID: bastion_0009
Revises: bastion_0008
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bastion.db.types import UTCDateTime

revision: str = "bastion_0009"
down_revision: str | Sequence[str] | None = "bastion_0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bastion_workflows",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.Column("parent_id", sa.String(length=200), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bastion_workflows")),
    )
    op.create_index(op.f("ix_bastion_workflows_name"), "bastion_workflows", ["name"])
    op.create_index(op.f("ix_bastion_workflows_status"), "bastion_workflows", ["status"])
    op.create_index(op.f("ix_bastion_workflows_owner"), "bastion_workflows", ["owner"])
    op.create_table(
        "bastion_workflow_steps",
        sa.Column("workflow_id", sa.String(length=200), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("output", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("wake_at", UTCDateTime(), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["bastion_workflows.id"],
            name=op.f("fk_bastion_workflow_steps_workflow_id_bastion_workflows"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workflow_id", "position", name=op.f("pk_bastion_workflow_steps")),
    )
    op.create_index(
        "ix_bastion_workflow_steps_status", "bastion_workflow_steps", ["workflow_id", "status"]
    )


def downgrade() -> None:
    op.drop_index("ix_bastion_workflow_steps_status", table_name="bastion_workflow_steps")
    op.drop_table("bastion_workflow_steps")
    op.drop_index(op.f("ix_bastion_workflows_owner"), table_name="bastion_workflows")
    op.drop_index(op.f("ix_bastion_workflows_status"), table_name="bastion_workflows")
    op.drop_index(op.f("ix_bastion_workflows_name"), table_name="bastion_workflows")
    op.drop_table("bastion_workflows")
