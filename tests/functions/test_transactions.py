"""Queries are read-only, mutations all-or-nothing, actions hold no transaction."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from bastion import App, Runtime
from bastion.errors import ReadOnlyViolation
from bastion.testing import BastionClient
from tests.apps import Note, app


@pytest.fixture
def bastion_app() -> App:
    return app


def _notes(runtime: Runtime) -> list[str]:
    with runtime.database.read_transaction() as session:
        return list(session.scalars(select(Note.text).order_by(Note.id)))


@pytest.mark.parametrize("path", ["/sneaky/orm", "/sneaky/sql"])
async def test_a_query_that_writes_fails_clearly_and_changes_nothing(
    client: BastionClient, runtime: Runtime, path: str
) -> None:
    await client.post("/api/v1/notes", json={"text": "before"})
    response = await client.get("/api/v1" + path)
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"
    assert "read-only transaction" in response.json()["detail"], "development shows the reason"
    assert _notes(runtime) == ["before"]
    with pytest.raises(ReadOnlyViolation, match="use a mutation"):
        await runtime.call(path.removeprefix("/sneaky/").join(("sneaky_", "_write")))


async def test_a_mutation_that_raises_after_writing_leaves_no_trace(
    client: BastionClient, runtime: Runtime
) -> None:
    response = await client.post("/api/v1/notes/failing", json={"text": "ghost"})
    assert response.status_code == 500
    assert _notes(runtime) == []


async def test_a_mutation_whose_result_is_invalid_is_rolled_back(
    client: BastionClient, runtime: Runtime
) -> None:
    response = await client.post("/api/v1/notes/bad-result", json={"text": "ghost"})
    assert response.status_code == 500
    assert _notes(runtime) == []


async def test_a_unique_violation_is_a_conflict_and_commits_nothing(
    client: BastionClient, runtime: Runtime
) -> None:
    assert (await client.post("/api/v1/notes", json={"text": "same"})).status_code == 201
    second = await client.post("/api/v1/notes", json={"text": "same"})
    assert second.status_code == 409
    assert second.json()["code"] == "conflict"
    assert _notes(runtime) == ["same"]


async def test_a_committed_mutation_is_visible_to_the_next_query(client: BastionClient) -> None:
    created = (await client.post("/api/v1/notes", json={"text": "hello"})).json()
    fetched = await client.get(f"/api/v1/notes/{created['id']}")
    assert fetched.json() == created


async def test_actions_hold_no_session_but_can_call_queries(client: BastionClient) -> None:
    await client.post("/api/v1/notes", json={"text": "one"})
    refused = await client.post("/api/v1/action/session")
    assert refused.status_code == 500
    assert "holds no database transaction" in refused.json()["exception"], (
        "development shows internals"
    )
    counted = await client.post("/api/v1/action/count")
    assert counted.json() == {"notes": 1}


async def test_concurrent_mutations_on_sqlite_all_commit(
    client: BastionClient, runtime: Runtime
) -> None:
    import anyio

    async def create(index: int) -> None:
        response = await client.post("/api/v1/notes", json={"text": f"note {index}"})
        assert response.status_code == 201, response.text

    async with anyio.create_task_group() as group:
        for index in range(30):
            group.start_soon(create, index)
    with runtime.database.read_transaction() as session:
        assert session.scalar(select(func.count()).select_from(Note)) == 30


def test_function_shapes_are_checked_at_declaration() -> None:
    other = App("shapes")
    with pytest.raises(TypeError, match="must be a plain 'def'"):

        @other.query("/q")
        async def async_query(ctx: object) -> None: ...

    with pytest.raises(TypeError, match="must be 'async def'"):

        @other.action("/a")
        def sync_action(ctx: object) -> None: ...

    with pytest.raises(TypeError, match="cannot be served with GET"):

        @other.mutation("/m", method="GET")
        def get_mutation(ctx: object) -> None: ...

    with pytest.raises(TypeError, match="context as its first parameter"):

        @other.query("/none")
        def no_context() -> None: ...

    @other.query("/x")
    def taken(ctx: object) -> None: ...

    with pytest.raises(ValueError, match="already declared"):
        other.query("/y", name="taken")(lambda ctx: None)
