"""``bastion search reindex``: rebuilds declared indexes with a progress bar."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from bastion import Runtime
from bastion.cli.main import cli
from tests.search.apps import index

APP = "tests.search.apps:app"


@pytest.fixture
def bastion_cli(monkeypatch: pytest.MonkeyPatch, bastion_database_url: str) -> CliRunner:
    monkeypatch.setenv("BASTION_DATABASE_URL", bastion_database_url)
    monkeypatch.setenv("BASTION_LOG_LEVEL", "WARNING")
    return CliRunner()


async def test_reindex(catalogue: Runtime, bastion_cli: CliRunner) -> None:
    with catalogue.database.transaction() as session:
        index.delete(session, *range(1, 31))
        session.execute(text("UPDATE products SET name = 'Cold Brew' WHERE id = 4"))

    result = bastion_cli.invoke(cli, ["search", "reindex", APP, "--index", "product_search"])
    assert result.exit_code == 0, result.output
    assert "product_search: 30 rows indexed" in result.output
    with catalogue.database.read_transaction() as session:
        assert [hit.key for hit in index.search(session, "cold brew")][:1] == [4]


async def test_reindex_refuses_an_unknown_index(runtime: Runtime, bastion_cli: CliRunner) -> None:
    result = bastion_cli.invoke(cli, ["search", "reindex", APP, "--index", "nope"])
    assert result.exit_code != 0
    assert "no search index 'nope'" in result.output
    assert "declared: product_search" in result.output
