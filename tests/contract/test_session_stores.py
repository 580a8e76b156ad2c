"""One contract for every session store: memory, database (SQLite and PostgreSQL) and Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from bastion import App
from bastion.auth.sessions import (
    DatabaseSessionStore,
    InMemorySessionStore,
    RedisSessionStore,
    SessionRecord,
    SessionStore,
    hash_session_id,
    new_session_id,
)
from bastion.db import Database
from bastion.settings.sections import DatabaseSection
from tests.apps import app


@pytest.fixture
def bastion_app() -> App:
    return app


@pytest.fixture(params=["memory", "database", "redis"])
async def store(
    request: pytest.FixtureRequest, bastion_database_url: str
) -> AsyncIterator[SessionStore]:
    if request.param == "memory":
        yield InMemorySessionStore()
    elif request.param == "database":
        database = Database(DatabaseSection(url=bastion_database_url))
        yield DatabaseSessionStore(database)
        database.dispose()
    else:
        import redis.asyncio as redis

        client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
        # A prefix per test keeps runs apart on a shared Redis.
        yield RedisSessionStore(client, prefix=f"bastion-test:{uuid.uuid4().hex}:")
        await client.aclose()


def _record(user_id: str | None = "u-1", **data: object) -> SessionRecord:
    now = datetime.now(UTC).replace(microsecond=0)
    return SessionRecord(
        key=hash_session_id(new_session_id()),
        user_id=user_id,
        data=dict(data),
        created_at=now,
        last_seen_at=now,
    )


async def test_save_load_and_replace(store: SessionStore) -> None:
    record = _record(theme="dark")
    await store.save(record)
    loaded = await store.load(record.key)
    assert loaded == record
    record.data["theme"] = "light"
    record.last_seen_at += timedelta(minutes=5)
    await store.save(record)
    assert await store.load(record.key) == record


async def test_missing_and_deleted_sessions_load_as_none(store: SessionStore) -> None:
    assert await store.load(hash_session_id("never-issued")) is None
    record = _record()
    await store.save(record)
    await store.delete(record.key)
    assert await store.load(record.key) is None
    await store.delete(record.key)


async def test_deleting_a_users_sessions_keeps_the_others(store: SessionStore) -> None:
    mine = [_record("u-1"), _record("u-1")]
    theirs = _record("u-2")
    anonymous = _record(None, cart=[1, 2])
    for record in (*mine, theirs, anonymous):
        await store.save(record)
    assert await store.delete_for_user("u-1") == 2
    assert [await store.load(r.key) for r in mine] == [None, None]
    assert await store.load(theirs.key) == theirs
    assert await store.load(anonymous.key) == anonymous
    assert await store.delete_for_user("u-1") == 0


def test_expiry_is_the_earlier_of_idle_and_absolute() -> None:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    record = SessionRecord(
        key="k",
        user_id=None,
        data={},
        created_at=start,
        last_seen_at=start,
        idle_timeout=timedelta(hours=1),
        absolute_timeout=timedelta(hours=3),
    )
    assert record.expires_at() == start + timedelta(hours=1)
    record.last_seen_at = start + timedelta(hours=2, minutes=30)
    assert record.expires_at() == start + timedelta(hours=3)
    assert not record.is_expired(start + timedelta(hours=2, minutes=59))
    assert record.is_expired(start + timedelta(hours=3))


def test_session_ids_are_random_and_stored_hashed() -> None:
    first, second = new_session_id(), new_session_id()
    assert first != second
    assert len(first) >= 43
    assert hash_session_id(first) != first
    assert len(hash_session_id(first)) == 64
