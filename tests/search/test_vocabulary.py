"""Typo tolerance through the vocabulary of indexed words (PostgreSQL's ``<name>_words``):
kept in step by upkeep, undone by rollbacks, rebuilt by ``bastion search reindex``."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from bastion import Runtime
from bastion.cli.main import cli
from tests.search.apps import Product, index


def keys(runtime: Runtime, query: str) -> list[int]:
    with runtime.database.read_transaction() as session:
        return [hit.key for hit in index.search(session, query)]


def keys_in(session: Session, query: str) -> list[int]:
    return [hit.key for hit in index.search(session, query)]


def vocabulary(runtime: Runtime, *words: str) -> set[str]:
    """Which of ``words`` the vocabulary holds; skips on SQLite, which has none."""
    if runtime.database.write_engine.dialect.name != "postgresql":
        pytest.skip("only the PostgreSQL index keeps a vocabulary (SQLite matches trigrams)")
    with runtime.database.read_transaction() as session:
        rows = session.execute(
            text("SELECT word FROM product_search_words WHERE word = ANY(:words)"),
            {"words": list(words)},
        )
        return set(rows.scalars())


@pytest.fixture
def bastion_cli(monkeypatch: pytest.MonkeyPatch, bastion_database_url: str) -> CliRunner:
    monkeypatch.setenv("BASTION_DATABASE_URL", bastion_database_url)
    monkeypatch.setenv("BASTION_LOG_LEVEL", "WARNING")
    return CliRunner()


async def test_words_written_through_the_orm_are_found_by_typo_after_commit(
    catalogue: Runtime,
) -> None:
    assert keys(catalogue, "quinao flaks") == []
    with catalogue.database.transaction() as session:
        session.add(
            Product(
                id=31, name="Quinoa Flakes", description="Rolled, for porridge.", category="kitchen"
            )
        )
        session.get(Product, 23).name = "Pilates Mat"  # type: ignore[union-attr]
    assert keys(catalogue, "quinao flaks")[:1] == [31]
    assert keys(catalogue, "pilaets")[:1] == [23]


async def test_a_rollback_adds_no_words(catalogue: Runtime) -> None:
    def write_then_fail() -> None:
        with catalogue.database.transaction() as session:
            session.add(Product(id=32, name="Quinoa Bowl", category="kitchen"))
            session.flush()
            assert keys_in(session, "quinao") == [32]
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError):
        write_then_fail()
    assert keys(catalogue, "quinao") == []
    if catalogue.database.write_engine.dialect.name == "postgresql":
        assert vocabulary(catalogue, "quinoa", "bowl") == set()


async def test_a_deleted_row_leaves_its_words_until_a_rebuild(catalogue: Runtime) -> None:
    with catalogue.database.transaction() as session:
        session.add(Product(id=31, name="Quinoa Flakes", category="kitchen"))
    with catalogue.database.transaction() as session:
        session.delete(session.get(Product, 31))
    # The stale word is harmless: it corrects "quinao" to a word no row has any more.
    assert keys(catalogue, "quinao") == []
    assert vocabulary(catalogue, "quinoa", "flakes") == {"quinoa", "flakes"}
    with catalogue.database.transaction() as session:
        index.rebuild(session)
    assert vocabulary(catalogue, "quinoa", "flakes") == set()


async def test_reindex_rebuilds_a_lost_vocabulary(
    catalogue: Runtime, bastion_cli: CliRunner
) -> None:
    assert vocabulary(catalogue, "headphones") == {"headphones"}
    with catalogue.database.transaction() as session:
        session.execute(text("DELETE FROM product_search_words"))
    assert keys(catalogue, "hedphones") == []
    assert keys(catalogue, "headphones")[:1] == [6]  # word matches do not need it

    result = bastion_cli.invoke(cli, ["search", "reindex", "tests.search.apps:app"])
    assert result.exit_code == 0, result.output
    assert keys(catalogue, "hedphones")[:1] == [6]


async def test_create_upgrades_an_index_made_before_the_vocabulary(catalogue: Runtime) -> None:
    vocabulary(catalogue)
    with catalogue.database.write_engine.begin() as connection:
        # The layout of an index created by an earlier bastion.
        connection.execute(text("DROP TABLE product_search_words"))
        connection.execute(
            text(
                "CREATE INDEX product_search_search_name_trgm "
                "ON product_search_search USING gin (name gin_trgm_ops)"
            )
        )
        index.create(connection)
        old = connection.execute(
            text("SELECT count(*) FROM pg_indexes WHERE indexname LIKE '%\\_trgm'")
        )
        assert old.scalar_one() == 1  # the vocabulary's own
    with catalogue.database.transaction() as session:
        index.rebuild(session)
    assert keys(catalogue, "hedphones")[:1] == [6]
