"""shop product search vocabulary: typo tolerance that scales on PostgreSQL

PostgreSQL's index now corrects misspelt query words against a table of the distinct
indexed words (``shop_product_search_words``) instead of matching trigrams against
every row. ``create`` brings an index made by shop_0005 to that layout (it adds the
vocabulary and drops the per-field trigram indexes it replaces; on SQLite nothing
changes) and the rebuild fills it, in the migration's transaction, like shop_0005.

Revision ID: shop_0007
Revises: shop_0006
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from sqlalchemy.orm import Session

from examples.shop.models import product_search

revision: str = "shop_0007"
down_revision: str | Sequence[str] | None = "shop_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    connection = op.get_bind()
    product_search.create(connection)
    with Session(bind=connection) as session:
        product_search.rebuild(session)


def downgrade() -> None:
    # The code of shop_0006 finds typos without the vocabulary (slowly, through the
    # rows' text), so dropping it is all a downgrade needs.
    op.execute("DROP TABLE IF EXISTS shop_product_search_words")
