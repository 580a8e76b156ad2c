"""Two server processes' runtimes on one database, joined by the bus (Redis on SQLite,
LISTEN/NOTIFY on PostgreSQL): a commit in one reaches the other's realtime clients and
drops the other's cached results."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bastion.testing import RealtimeClient, RuntimeFactory, live_server, selected_backend
from tests.realtime.conftest import sign_up

pytestmark = pytest.mark.anyio


@pytest.fixture
def bastion_settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    channel = {"channel": f"bastion_test_{secrets.token_hex(4)}"}
    if selected_backend() == "postgres":
        return {"pubsub": {"backend": "postgres", **channel}}
    redis_url = request.getfixturevalue("redis_url")
    return {"redis": {"url": redis_url}, "pubsub": {"backend": "redis", **channel}}


@pytest.fixture
def two_servers(make_runtime: RuntimeFactory) -> Iterator[tuple[str, str]]:
    with live_server(make_runtime().asgi()) as one, live_server(make_runtime().asgi()) as two:
        yield one, two


async def test_a_commit_on_one_server_reaches_clients_of_the_other(
    two_servers: tuple[str, str],
) -> None:
    one, two = two_servers
    user = await sign_up(one)
    async with (
        RealtimeClient.connect(one, token=user.token) as tab1,
        RealtimeClient.connect(two, token=user.token) as tab2,
        RealtimeClient.connect(two) as watcher,
    ):
        for tab in (tab1, tab2):
            await tab.subscribe("inbox")
        assert (await watcher.subscribe(query="item_count"))["data"] == 0
        async with httpx.AsyncClient(base_url=one + "/api/v1") as http:
            added = await http.post("/items", params={"name": "x"}, headers=user.headers())
        assert added.status_code == 201
        for tab in (tab1, tab2):
            assert (await tab.next(event="item_added"))["data"]["name"] == "x"
        assert (await watcher.next(type="result"))["data"] == 1


async def test_a_commit_on_one_server_drops_the_other_s_cached_results(
    two_servers: tuple[str, str],
) -> None:
    one, two = two_servers
    user = await sign_up(one)
    async with (
        httpx.AsyncClient(base_url=one + "/api/v1") as first,
        httpx.AsyncClient(base_url=two + "/api/v1") as second,
    ):
        assert (await second.get("/items-count/cached")).json() == 0
        await first.post("/items", params={"name": "x"}, headers=user.headers())
        counts = [(await second.get("/items-count/cached")).json()]
        for _ in range(100):  # the other process hears the commit within milliseconds
            if counts[-1] == 1:
                break
            await asyncio.sleep(0.05)
            counts.append((await second.get("/items-count/cached")).json())
        assert counts[-1] == 1, counts
