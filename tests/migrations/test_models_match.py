"""Applying every migration yields exactly the tables the models declare (platform and shop)."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from bastion import App, Runtime
from bastion.db import platform_metadata
from examples.shop.app import app as shop


@pytest.fixture
def bastion_app() -> App:
    return shop


@pytest.fixture
def bastion_settings_overrides() -> dict[str, object]:
    return {"shop": {"seed_demo_data": False}}


def _not_a_search_table(name: str | None, type_: str, _parents: object) -> bool:
    # A search index's tables come from its migration, with no model to compare.
    return type_ != "table" or not any(
        index.owns_table(name or "") for index in shop.search_indexes.values()
    )


async def test_migrations_match_the_models(runtime: Runtime) -> None:
    assert shop.metadata is not None
    with runtime.database.write_engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_name": _not_a_search_table}
        )
        differences = compare_metadata(context, [platform_metadata, shop.metadata])
    assert differences == []


async def test_downgrading_the_app_branch_keeps_the_platform(runtime: Runtime) -> None:
    migrator = runtime.migrator()
    migrator.downgrade()
    status = migrator.status()
    assert status.pending == ("shop_0007",)
    migrator.upgrade()
    assert migrator.status().up_to_date
