"""Automatic upkeep: ORM writes to an indexed table update the index in their transaction."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from bastion import Runtime
from tests.search.apps import Product, index, products


def keys(runtime: Runtime, text: str) -> list[int]:
    with runtime.database.read_transaction() as session:
        return [hit.key for hit in index.search(session, text, fuzzy=False)]


async def test_orm_insert_update_and_delete_are_searchable_after_commit(
    catalogue: Runtime,
) -> None:
    with catalogue.database.transaction() as session:
        session.add(Product(id=31, name="Matcha Whisk", description="Bamboo.", category="kitchen"))
        session.get(Product, 23).name = "Pilates Mat"  # type: ignore[union-attr]
    assert keys(catalogue, "matcha") == [31]
    assert keys(catalogue, "pilates") == [23]
    assert 23 not in keys(catalogue, "yoga")

    with catalogue.database.transaction() as session:
        session.delete(session.get(Product, 31))
        session.get(Product, 16).description = "Loose leaf gyokuro."  # type: ignore[union-attr]
    assert keys(catalogue, "matcha") == []
    assert keys(catalogue, "gyokuro") == [16]
    assert keys(catalogue, "sencha") == []


async def test_a_change_to_an_indexed_field_is_visible_inside_its_transaction(
    catalogue: Runtime,
) -> None:
    with catalogue.database.transaction() as session:
        session.get(Product, 25).name = "Rucksack"  # type: ignore[union-attr]
        session.flush()
        assert [hit.key for hit in index.search(session, "rucksack", fuzzy=False)] == [25]


async def test_a_rollback_leaves_the_index_unchanged(catalogue: Runtime) -> None:
    def write_then_fail() -> None:
        with catalogue.database.transaction() as session:
            session.add(Product(id=32, name="Matcha Bowl", category="kitchen"))
            session.get(Product, 23).name = "Pilates Mat"  # type: ignore[union-attr]
            session.delete(session.get(Product, 22))
            session.flush()
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError):
        write_then_fail()
    assert keys(catalogue, "matcha") == []
    assert keys(catalogue, "yoga") == [23]
    assert keys(catalogue, "running") == [22]


async def test_a_changed_key_moves_the_entry(catalogue: Runtime) -> None:
    with catalogue.database.transaction() as session:
        session.get(Product, 27).id = 127  # type: ignore[union-attr]
    assert keys(catalogue, "notebook") == [127]


async def test_writes_to_other_columns_leave_entries_alone(catalogue: Runtime) -> None:
    with catalogue.database.transaction() as session:
        # The entry is removed behind the ORM's back: a re-sync would bring it back.
        index.delete(session, 12)
        session.get(Product, 12).in_stock = False  # type: ignore[union-attr]
    assert keys(catalogue, "laptop") == [25]


async def test_core_updates_need_an_explicit_upsert(catalogue: Runtime) -> None:
    with catalogue.database.transaction() as session:
        session.execute(update(products).where(products.c.id == 24).values(name="Flask"))
    assert keys(catalogue, "flask") == []
    with catalogue.database.transaction() as session:
        index.upsert(session, 24)
    assert keys(catalogue, "flask") == [24]


async def test_a_flush_of_more_rows_than_one_statement_can_bind(catalogue: Runtime) -> None:
    # 66,000 keys: past PostgreSQL's 65,535 parameters per statement (and the 32,766
    # of SQLite's default build), so the sync has to go in batches.
    count = 66_000
    with catalogue.database.transaction() as session:
        session.add_all(
            Product(id=1000 + i, name=f"Bulk Widget {i}", category="bulk") for i in range(count)
        )
    with catalogue.database.read_transaction() as session:
        hits = index.search(session, "widget", limit=2 * count, filters={"category": "bulk"})
    assert len(hits) == count
