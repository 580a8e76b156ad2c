"""shop product images: a stored file instead of an image URL

``image_url`` was never written by the API. A product's image is now a file in
``bastion_files`` (uploaded through ``POST /products/{id}/image``), and responses carry
a signed, expiring URL to it, made per request: a stored URL would go stale.

Revision ID: shop_0006
Revises: shop_0005
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "shop_0006"
down_revision: str | Sequence[str] | None = "shop_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("shop_products", sa.Column("image_file_id", sa.String(length=32), nullable=True))
    op.drop_column("shop_products", "image_url")


def downgrade() -> None:
    op.add_column("shop_products", sa.Column("image_url", sa.String(length=1024), nullable=True))
    op.drop_column("shop_products", "image_file_id")
