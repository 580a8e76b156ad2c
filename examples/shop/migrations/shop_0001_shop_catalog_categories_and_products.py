"""shop catalog: categories and products

Revision ID: shop_0001
Revises:
Create Date: 2026-11-22 04:27:59.191161
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bastion.db.types import UTCDateTime

revision: str = "shop_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("shop",)
depends_on: str | Sequence[str] | None = "bastion_0001"


def upgrade() -> None:
    op.create_table(
        "shop_categories",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("slug", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shop_categories")),
        sa.UniqueConstraint("slug", name=op.f("uq_shop_categories_slug")),
    )
    op.create_table(
        "shop_products",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("price_cents", sa.Integer(), nullable=False),
        sa.Column("stock", sa.Integer(), nullable=False),
        sa.Column("weight_grams", sa.Integer(), nullable=False),
        sa.Column("category_id", sa.Integer(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("image_url", sa.String(length=1024), nullable=True),
        sa.Column("popularity_score", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["category_id"],
            ["shop_categories.id"],
            name=op.f("fk_shop_products_category_id_shop_categories"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shop_products")),
    )
    with op.batch_alter_table("shop_products", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_shop_products_category_id"), ["category_id"], unique=False
        )
        batch_op.create_index(
            "ix_shop_products_popularity", ["popularity_score", "name", "id"], unique=False
        )
        batch_op.create_index("ix_shop_products_price", ["price_cents", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("shop_products", schema=None) as batch_op:
        batch_op.drop_index("ix_shop_products_price")
        batch_op.drop_index("ix_shop_products_popularity")
        batch_op.drop_index(batch_op.f("ix_shop_products_category_id"))

    op.drop_table("shop_products")
    op.drop_table("shop_categories")
