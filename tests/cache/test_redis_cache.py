"""The Redis query cache across processes: shared entries, invalidation by any process's
commits, typed hits, namespaces, TTL, and requests that keep answering when Redis fails.

The behaviour both backends share runs in ``test_query_cache.py`` on each of them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import redis
from structlog.testing import capture_logs

from bastion import App, Principal, Runtime
from bastion.cache import build_query_cache
from bastion.cache.redis import RedisQueryCache
from bastion.settings.sections import CacheSection
from bastion.testing import BastionClient, RuntimeFactory, free_port
from bastion.testing.plugin import require_service
from tests.cache.apps import RUNS, Summary, app
from tests.support.servers import bastion_server

pytestmark = pytest.mark.redis


@pytest.fixture
def bastion_app() -> App:
    return app


@pytest.fixture
def bastion_settings_overrides(redis_cache: dict[str, Any]) -> dict[str, Any]:
    return redis_cache


@pytest.fixture(autouse=True)
def _fresh_runs() -> None:
    RUNS.clear()


async def started(runtime: Runtime) -> Runtime:
    await runtime.startup()
    return runtime


async def test_a_hit_returns_the_type_an_uncached_call_returns(
    runtime: Runtime, client: BastionClient, make_runtime: RuntimeFactory
) -> None:
    await runtime.call("add_item", name="a")
    uncached = await (await started(make_runtime(cache={"enabled": False}))).call("item_summary")
    miss = await runtime.call("item_summary")
    hit = await runtime.call("item_summary")
    assert (runtime.cache.hits, RUNS["item_summary"]) == (1, 2)
    assert type(hit) is Summary
    assert hit == miss == uncached
    assert (hit.names, hit.total) == (("a",), Decimal("1.50"))
    assert isinstance(hit.checked_at, datetime)
    assert hit.checked_at.tzinfo is not None
    bodies = [(await client.get("/api/v1/items/summary")).content for _ in range(2)]
    assert bodies[0] == bodies[1]
    assert runtime.cache.hits == 3


async def test_runtimes_share_entries_but_never_between_callers(
    make_runtime: RuntimeFactory,
) -> None:
    one, two = await started(make_runtime()), await started(make_runtime())
    ada, bob = Principal("ada"), Principal("bob")
    await one.call("add_item", user=ada, name="ada's")
    assert await one.call("my_items", user=ada) == ["ada's"]
    assert await two.call("my_items", user=ada) == ["ada's"]
    assert two.cache.hits == 1, "the other runtime's entry"
    assert await two.call("my_items", user=bob) == []
    assert await two.call("my_items") == []
    assert RUNS["my_items"] == 3


async def test_a_commit_in_one_runtime_invalidates_the_others_and_its_running_reads(
    make_runtime: RuntimeFactory,
) -> None:
    one, two = await started(make_runtime()), await started(make_runtime())
    assert await one.call("item_count") == 0
    assert await two.call("item_count") == 0
    await two.call("add_item", name="x")
    assert await one.call("item_count") == 1

    async def slow_read() -> None:
        await one.call("slow_item_count")

    async with anyio.create_task_group() as group:
        group.start_soon(slow_read)
        await anyio.sleep(0.05)  # the read is running in `one`
        await two.call("add_item", name="meanwhile")
    assert await two.call("slow_item_count") == 2, "the read across the commit was not stored"


def test_apps_sharing_a_redis_never_meet(redis_url: str, redis_cache: dict[str, Any]) -> None:
    prefix = redis_cache["cache"]["prefix"]
    shop = RedisQueryCache(redis_url, namespace=f"{prefix}shop:")
    blog = RedisQueryCache(redis_url, namespace=f"{prefix}blog:")

    async def read(cache: RedisQueryCache, value: int) -> int:
        async def compute() -> tuple[int, frozenset[str]]:
            return value, frozenset({"posts"})

        result: int = await cache.get_or_compute("same-key", 60, compute)
        return result

    async def scenario() -> None:
        assert await read(shop, 1) == 1
        assert await read(blog, 2) == 2, "not the shop's entry"
        shop.invalidate(["posts"])
        assert await read(blog, 3) == 2, "the shop's commit is not the blog's"
        assert await read(shop, 4) == 4

    built = build_query_cache(
        CacheSection(backend="redis", prefix=prefix), redis_url=redis_url, app_name="shop"
    )
    assert isinstance(built, RedisQueryCache)
    try:
        anyio.run(scenario)
        assert built.invalidate(["posts"]) == 1
        assert anyio.run(read, shop, 5) == 5, "the namespace is the prefix and the app's name"
    finally:
        for cache in (shop, blog, built):
            cache.close()


def test_entries_expire_with_their_ttl(redis_url: str, redis_cache: dict[str, Any]) -> None:
    cache = RedisQueryCache(redis_url, namespace=redis_cache["cache"]["prefix"])
    runs: list[int] = []

    async def read() -> int:
        async def compute() -> tuple[int, frozenset[str]]:
            runs.append(1)
            return len(runs), frozenset({"t"})

        result: int = await cache.get_or_compute("k", 0.2, compute)
        return result

    try:
        assert anyio.run(read) == 1
        assert anyio.run(read) == 1
        # Redis expires the entry itself: wait for it (no clock of ours to shift).
        time.sleep(0.3)
        assert anyio.run(read) == 2
        cache.clear()
        assert anyio.run(read) == 3
    finally:
        cache.close()


async def test_with_redis_down_requests_answer_uncached(make_runtime: RuntimeFactory) -> None:
    runtime = await started(
        make_runtime(
            redis={"url": f"redis://127.0.0.1:{free_port()}/0"}, cache={"redis_retry_s": 60}
        )
    )
    with capture_logs() as logs:
        async with BastionClient(runtime.asgi()) as client:
            assert (await client.get("/api/v1/items/count")).json() == 0
            assert (await client.post("/api/v1/items", params={"name": "a"})).status_code < 300
            assert (await client.get("/api/v1/items/count")).json() == 1
            assert (await client.get("/api/v1/items/count")).json() == 1
    assert RUNS["item_count"] == 3
    assert (runtime.cache.hits, runtime.cache.misses) == (0, 3)
    assert isinstance(runtime.cache, RedisQueryCache)
    assert runtime.cache.errors == 1, "one failure, then Redis is left alone"
    events = [(log["event"], log["log_level"]) for log in logs]
    assert ("cache_unavailable", "warning") in events


class PrivateRedis:
    """A redis-server of the test's own, which it may kill and restart on the same port.

    Every write is in its append-only file, so a restart finds the data as it was.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        options = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)]
        durable = ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
        self.process = subprocess.Popen(
            ["redis-server", *options, *durable], stdout=subprocess.DEVNULL
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        require_service("redis-server is not installed (apt-get install redis-server)")
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


async def test_an_invalidation_lost_to_an_outage_is_sent_before_the_next_read(
    make_runtime: RuntimeFactory, private_redis: PrivateRedis
) -> None:
    def on_private_redis() -> Runtime:
        return make_runtime(redis={"url": private_redis.url}, cache={"redis_retry_s": 0.2})

    writer, reader = await started(on_private_redis()), await started(on_private_redis())
    assert await reader.call("item_count") == 0
    private_redis.kill()
    with capture_logs() as logs:
        await writer.call("add_item", name="a")  # its invalidation cannot reach Redis
    assert ("cache_invalidation_failed", "error") in [(e["event"], e["log_level"]) for e in logs]
    assert await writer.call("item_count") == 1, "the writer runs uncached meanwhile"
    private_redis.start()  # with the entry of 0 items, and no bump
    assert isinstance(writer.cache, RedisQueryCache)
    versions = f"{writer.cache.namespace}versions"
    admin = redis.Redis.from_url(private_redis.url)
    try:
        assert admin.hget(versions, "items") is None
        # Until the writer sends its bump, a process that reaches Redis may serve the
        # entry from before the commit: the risk the Redis backend documents.
        await anyio.sleep(0.25)  # the writer's pause after the failure is over
        assert await writer.call("item_count") == 1
        assert admin.hget(versions, "items") == b"1", "sent before reading"
        assert await reader.call("item_count") == 1
    finally:
        admin.close()


async def test_a_commit_in_another_process_invalidates_this_ones_results(
    runtime: Runtime, bastion_database_url: str, redis_cache: dict[str, Any], tmp_path: Path
) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("BASTION_", "PYTEST_"))
    }
    env.update(
        BASTION_APP="tests.cache.apps:app",
        BASTION_ENV="development",
        BASTION_DATABASE_URL=bastion_database_url,
        BASTION_DATABASE_AUTO_MIGRATE="false",
        BASTION_REDIS_URL=redis_cache["redis"]["url"],
        BASTION_CACHE_BACKEND="redis",
        BASTION_CACHE_PREFIX=redis_cache["cache"]["prefix"],
    )
    with bastion_server(env, tmp_path / "server.log") as url:
        async with httpx.AsyncClient(base_url=f"{url}/api/v1", timeout=10) as http:
            assert await runtime.call("item_count") == 0
            assert (await http.get("/items/count")).json() == 0
            (await http.post("/items", params={"name": "there"})).raise_for_status()
            assert await runtime.call("item_count") == 1, "the server's commit reached us"
            assert (await http.get("/items/count")).json() == 1
            await runtime.call("add_item", name="here")
            assert (await http.get("/items/count")).json() == 2, "ours reached the server"
            assert await runtime.call("item_count") == 2
    assert RUNS["item_count"] == 2, "the other two were the server's entries"
