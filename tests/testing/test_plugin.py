"""The test kit's own fixtures: clock, live server, identity, fresh databases."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import func, select

from bastion import App, Context, Principal, Runtime
from bastion.testing import BastionClient, Clock
from tests.apps import Note, app

clocked = App("clocked")


@clocked.query("/now")
def now(ctx: Context) -> dict[str, str]:
    return {"now": ctx.now().isoformat(), "user": ctx.user.id if ctx.user else "anonymous"}


@pytest.fixture
def bastion_app() -> App:
    return app


async def test_clock_freezes_and_shifts_time(clock: Clock) -> None:
    assert clock.now() == datetime(2030, 1, 1, tzinfo=UTC)
    assert clock.shift(minutes=5) == datetime(2030, 1, 1, 0, 5, tzinfo=UTC)
    assert datetime.now(UTC) == datetime(2030, 1, 1, 0, 5, tzinfo=UTC)
    assert clock.set(datetime(2031, 6, 1, tzinfo=UTC)).year == 2031


async def test_the_clock_reaches_functions_and_identity_is_injected(
    clock: Clock, bastion_settings: object
) -> None:
    from bastion.settings import Settings

    assert isinstance(bastion_settings, Settings)
    runtime = clocked.runtime(bastion_settings)
    async with BastionClient(runtime.asgi()) as client:
        assert (await client.get("/api/v1/now")).json() == {
            "now": "2030-01-01T00:00:00+00:00",
            "user": "anonymous",
        }
        clock.shift(seconds=90)
        with client.acting_as(Principal("u-7")):
            assert (await client.get("/api/v1/now")).json() == {
                "now": "2030-01-01T00:01:30+00:00",
                "user": "u-7",
            }
        assert (await client.get("/api/v1/now")).json()["user"] == "anonymous"
    runtime.database.dispose()


def test_live_server_answers_over_a_real_socket(live_url: str) -> None:
    assert live_url.startswith("http://127.0.0.1:")
    response = httpx.post(f"{live_url}/api/v1/notes", json={"text": "over tcp"}, timeout=5)
    assert response.status_code == 201
    assert response.headers["x-request-id"]


async def test_each_test_gets_a_fresh_database_first(
    client: BastionClient, runtime: Runtime
) -> None:
    await client.post("/api/v1/notes", json={"text": "only in this test"})
    with runtime.database.read_transaction() as session:
        assert session.scalar(select(func.count()).select_from(Note)) == 1


async def test_each_test_gets_a_fresh_database_second(
    client: BastionClient, runtime: Runtime
) -> None:
    await client.post("/api/v1/notes", json={"text": "only in this test"})
    with runtime.database.read_transaction() as session:
        assert session.scalar(select(func.count()).select_from(Note)) == 1
