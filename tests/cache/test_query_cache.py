"""The query cache on both backends: hits, invalidation by commits, per-caller keys,
single-flight, TTL."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from bastion import App, Principal, Runtime
from bastion.cache import QueryCache, build_query_cache, parse_ttl
from bastion.functions import FunctionKind, declare
from bastion.settings import SettingsError, load_settings
from bastion.settings.sections import CacheSection
from bastion.testing import BastionClient
from tests.cache.apps import RUNS, Item, app


@pytest.fixture
def bastion_app() -> App:
    return app


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def bastion_settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Every test with a runtime runs on both backends: they promise the same behaviour."""
    if request.param == "memory":
        return {}
    overrides: dict[str, Any] = request.getfixturevalue("redis_cache")
    return overrides


@pytest.fixture(autouse=True)
def _fresh_runs() -> None:
    RUNS.clear()


async def test_a_hit_skips_the_query_until_a_commit_writes_its_table(
    client: BastionClient, runtime: Runtime
) -> None:
    assert (await client.get("/api/v1/items/count")).json() == 0
    assert (await client.get("/api/v1/items/count")).json() == 0
    assert RUNS["item_count"] == 1
    await client.post("/api/v1/others")
    assert (await client.get("/api/v1/items/count")).json() == 0
    assert RUNS["item_count"] == 1, "a write to another table keeps the entry"
    await client.post("/api/v1/items", params={"name": "a"})
    assert (await client.get("/api/v1/items/count")).json() == 1
    assert RUNS["item_count"] == 2
    assert (runtime.cache.hits, runtime.cache.misses) == (2, 2)


async def test_a_rolled_back_write_and_raw_reads_keep_the_entry(runtime: Runtime) -> None:
    assert await runtime.call("item_count") == 0

    def write_then_fail() -> None:
        with runtime.database.transaction() as session:
            session.add(Item(owner="x", name="ghost"))
            session.flush()
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        write_then_fail()
    assert await runtime.call("item_count") == 0
    assert RUNS["item_count"] == 1


async def test_results_are_never_shared_between_callers(client: BastionClient) -> None:
    ada, bob = Principal("ada"), Principal("bob")
    with client.acting_as(ada):
        await client.post("/api/v1/items", params={"name": "ada's"})
        assert (await client.get("/api/v1/my-items")).json() == ["ada's"]
    with client.acting_as(bob):
        assert (await client.get("/api/v1/my-items")).json() == []
    assert (await client.get("/api/v1/my-items")).json() == []
    assert RUNS["my_items"] == 3


async def test_concurrent_misses_run_the_query_once(runtime: Runtime) -> None:
    results: list[int] = []

    async def read() -> None:
        results.append(await runtime.call("slow_item_count"))

    async with anyio.create_task_group() as group:
        for _ in range(20):
            group.start_soon(read)
    assert results == [0] * 20
    assert RUNS["slow_item_count"] == 1


async def test_a_result_computed_across_a_commit_is_not_stored(runtime: Runtime) -> None:
    async def read() -> int:
        value: int = await runtime.call("slow_item_count")
        return value

    async with anyio.create_task_group() as group:
        group.start_soon(read)
        await anyio.sleep(0.05)  # the read is running
        await runtime.call("add_item", name="meanwhile")
    assert await runtime.call("slow_item_count") == 1, "the stale result was not cached"


def test_entries_expire_and_the_least_recently_used_go_first() -> None:
    now = [0.0]
    cache = QueryCache(max_entries=2, clock=lambda: now[0])

    async def fill(key: str, value: int) -> int:
        async def compute() -> tuple[int, frozenset[str]]:
            return value, frozenset({"t"})

        result: int = await cache.get_or_compute(key, 10, compute)
        return result

    async def scenario() -> None:
        await fill("a", 1)
        await fill("b", 2)
        assert cache.get("a") == (True, 1)  # "a" is now the most recent
        await fill("c", 3)
        assert cache.get("b") == (False, None), "least recently used, evicted"
        now[0] = 11
        assert cache.get("a") == (False, None), "expired"

    anyio.run(scenario)
    assert parse_ttl("5m") == 300
    assert parse_ttl("250ms") == 0.25
    with pytest.raises(ValueError, match="not like"):
        parse_ttl("soon")
    with pytest.raises(ValueError, match="positive"):
        parse_ttl(0)


def test_declarations_are_checked() -> None:
    local = App("cachechecks")
    with pytest.raises(ValueError, match="not like '30s'"):
        local.query("/x", cache="forever")(lambda ctx: 1)
    with pytest.raises(TypeError, match="only queries can be cached"):
        declare(
            FunctionKind.MUTATION,
            lambda ctx: None,
            path="/y",
            method=None,
            status_code=None,
            response=None,
            permissions=(),
            name="y",
            tags=(),
            cache_control=None,
            etag=False,
            cache="5m",
        )


# anyio runs hypothesis's async tests; the marks say so, since @given hides the coroutine.
@pytest.mark.anyio
@pytest.mark.usefixtures("anyio_backend")
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=st.lists(st.sampled_from(["item", "other", "read"]), min_size=1, max_size=15))
async def test_a_cached_count_never_lags_the_last_commit(
    runtime: Runtime, steps: list[str]
) -> None:
    for step in steps:
        if step == "item":
            await runtime.call("add_item", name="p")
        elif step == "other":
            await runtime.call("add_other")
        cached = await runtime.call("item_count")
        with runtime.database.read_transaction() as session:
            fresh = session.scalar(select(func.count()).select_from(Item))
        assert cached == fresh


def test_the_redis_backend_needs_a_redis_url() -> None:
    with pytest.raises(SettingsError, match=r"cache.backend: 'redis' needs \[redis\] url"):
        load_settings(None, environ={}, overrides={"cache": {"backend": "redis"}})
    with pytest.raises(ValueError, match="needs"):
        build_query_cache(CacheSection(backend="redis"), redis_url=None, app_name="x")
