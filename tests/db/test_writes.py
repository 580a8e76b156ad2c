"""Write sets: the tables a commit changed reach listeners after the commit, and only then."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, insert, select, text, update

from bastion import App, Runtime
from bastion.db.writes import mark_written
from bastion.testing import BastionClient
from tests.apps import Note, app


@pytest.fixture
def bastion_app() -> App:
    return app


@pytest.fixture
def heard(runtime: Runtime) -> list[frozenset[str]]:
    sets: list[frozenset[str]] = []
    runtime.database.on_write(sets.append)
    return sets


async def test_orm_changes_and_core_statements_are_recorded(
    runtime: Runtime, heard: list[frozenset[str]]
) -> None:
    with runtime.database.transaction() as session:
        session.add(Note(text="orm"))
    with runtime.database.transaction() as session:
        session.execute(insert(Note).values(text="core"))
        session.execute(update(Note).where(Note.text == "core").values(text="core!"))
    with runtime.database.transaction() as session:
        session.execute(delete(Note).where(Note.text == "orm"))
    assert heard == [frozenset({"notes"})] * 3


async def test_a_rollback_and_a_read_publish_nothing(
    runtime: Runtime, heard: list[frozenset[str]]
) -> None:
    def write_then_fail() -> None:
        with runtime.database.transaction() as session:
            session.add(Note(text="ghost"))
            session.flush()
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        write_then_fail()
    with runtime.database.transaction() as session:
        session.execute(select(Note)).all()
    with runtime.database.read_transaction() as session:
        session.execute(select(Note)).all()
    assert heard == []


async def test_raw_sql_is_declared_by_hand(runtime: Runtime, heard: list[frozenset[str]]) -> None:
    with runtime.database.transaction() as session:
        session.execute(text("INSERT INTO notes (text) VALUES ('raw')"))
    assert heard == [], "raw SQL cannot be read"
    with runtime.database.transaction() as session:
        session.execute(text("INSERT INTO notes (text) VALUES ('raw2')"))
        mark_written(session, "notes")
    assert heard == [frozenset({"notes"})]


async def test_a_mutation_over_http_reports_its_tables_once_committed(
    client: BastionClient, heard: list[frozenset[str]]
) -> None:
    assert (await client.post("/api/v1/notes", json={"text": "hello"})).status_code == 201
    assert (await client.post("/api/v1/notes/failing", json={"text": "x"})).status_code == 500
    assert heard == [frozenset({"notes"}), frozenset({"bastion_error_log"})], (
        "the failed mutation's note rolled back; the error log row it caused did not"
    )
