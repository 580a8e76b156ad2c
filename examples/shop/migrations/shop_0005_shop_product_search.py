"""shop product search: the full-text index behind GET /products?q=

The index is filled from the products already there, in the migration's transaction:
a database upgraded in place answers searches as soon as the upgrade commits.

Revision ID: shop_0005
Revises: shop_0004
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from sqlalchemy.orm import Session

from examples.shop.models import product_search

revision: str = "shop_0005"
down_revision: str | Sequence[str] | None = "shop_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    connection = op.get_bind()
    product_search.create(connection)
    with Session(bind=connection) as session:
        product_search.rebuild(session)


def downgrade() -> None:
    product_search.drop(op.get_bind())
