"""drop shop_outbox: the welcome email is a send_email job now

The outbox only ever waited for a sender that was never written (the job runner took
its place), so its rows are dropped with it: no email was going to leave from there.

Revision ID: shop_0004
Revises: shop_0003
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bastion.db.types import UTCDateTime

revision: str = "shop_0004"
down_revision: str | Sequence[str] | None = "shop_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_table("shop_outbox")


def downgrade() -> None:
    op.create_table(
        "shop_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shop_outbox")),
    )
