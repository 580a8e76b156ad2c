"""Fixtures for search tests: the catalogue app, seeded and indexed."""

from __future__ import annotations

import pytest
from sqlalchemy import insert

from bastion import App, Runtime
from tests.search.apps import CATALOGUE, app, index, products


@pytest.fixture
def bastion_app() -> App:
    return app


@pytest.fixture
async def catalogue(runtime: Runtime) -> Runtime:
    """The runtime, with the catalogue inserted and indexed."""
    with runtime.database.transaction() as session:
        session.execute(
            insert(products),
            [
                {"id": i, "name": n, "description": d, "category": c, "in_stock": s}
                for i, n, d, c, s in CATALOGUE
            ],
        )
        index.rebuild(session)
    return runtime
