"""The bus on each backend: messages reach every process (this one included) from any
thread, a lost subscription reconnects and reports the gap, and limits are enforced."""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bastion.pubsub import Bus, Message, MessageTooLarge, PostgresBus, RedisBus, make_bus
from bastion.settings import Settings
from bastion.testing import postgres_unavailable_reason, require_service
from tests.jobs.conftest import eventually

pytestmark = pytest.mark.anyio

POSTGRES_URL = os.environ.get(
    "BASTION_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def postgres_url() -> str:
    require_service(postgres_unavailable_reason(POSTGRES_URL))
    return POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def make(request: pytest.FixtureRequest) -> Callable[[], Bus]:
    """Buses on one channel, as if in separate processes."""
    channel = f"bastion_test_{secrets.token_hex(4)}"
    if request.param == "memory":
        shared = Bus(channel)
        return lambda: shared
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        return lambda: RedisBus(url, channel, reconnect_max_s=0.2)
    url = postgres_url()
    return lambda: PostgresBus(url, channel, reconnect_max_s=0.2)


@pytest.fixture
async def buses(make: Callable[[], Bus]) -> AsyncIterator[tuple[Bus, Bus]]:
    one, two = make(), make()
    await one.start()
    if two is not one:
        await two.start()
    try:
        yield one, two
    finally:
        await one.aclose()
        if two is not one:
            await two.aclose()


async def received(inbox: list[Message], count: int) -> list[Message]:
    await eventually(lambda: len(inbox) >= count, limit_s=5)
    return inbox


async def test_a_message_from_a_thread_reaches_every_bus_with_its_origin(
    buses: tuple[Bus, Bus],
) -> None:
    one, two = buses
    heard_one: list[Message] = []
    heard_two: list[Message] = []
    one.subscribe("writes", heard_one.append)
    two.subscribe("writes", heard_two.append)
    one.subscribe("other", lambda m: pytest.fail("wrong topic"))
    publisher = threading.Thread(target=one.publish, args=("writes", {"tables": ["a"]}))
    publisher.start()
    publisher.join()
    for inbox in (heard_one, heard_two):
        (message,) = await received(inbox, 1)
        assert (message.topic, message.data, message.origin) == (
            "writes",
            {"tables": ["a"]},
            one.origin,
        )


async def test_messages_keep_their_order(buses: tuple[Bus, Bus]) -> None:
    one, two = buses
    heard: list[Message] = []
    two.subscribe("n", heard.append)
    for number in range(200):
        one.publish("n", {"n": number})
    assert [m.data["n"] for m in await received(heard, 200)] == list(range(200))


async def test_a_failing_handler_does_not_stop_the_others(buses: tuple[Bus, Bus]) -> None:
    one, _ = buses
    heard: list[Message] = []

    def broken(_message: Message) -> None:
        raise RuntimeError("handler bug")

    one.subscribe("t", broken)
    one.subscribe("t", heard.append)
    one.publish("t", {})
    assert len(await received(heard, 1)) == 1


async def test_publishing_before_start_is_dropped_not_an_error() -> None:
    bus = Bus("c")
    heard: list[Message] = []
    bus.subscribe("t", heard.append)
    bus.publish("t", {"x": 1})
    await asyncio.sleep(0.01)
    assert heard == []


@pytest.mark.postgres
async def test_postgres_refuses_a_message_notify_cannot_carry() -> None:
    bus = PostgresBus(postgres_url(), "bastion_test_large")
    with pytest.raises(MessageTooLarge):
        bus.publish("t", {"blob": "x" * 8_000})


@pytest.mark.redis
async def test_redis_reconnects_and_reports_the_gap(redis_url: str) -> None:
    import redis.asyncio as redis

    bus = RedisBus(redis_url, f"bastion_test_{secrets.token_hex(4)}", reconnect_max_s=0.1)
    gaps: list[int] = []
    heard: list[Message] = []
    bus.on_gap(lambda: gaps.append(1))
    bus.subscribe("t", heard.append)
    await bus.start()
    try:
        admin = redis.Redis.from_url(redis_url)
        await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        await admin.aclose()
        # One gap when the subscription is lost, one when it is back.
        await eventually(lambda: len(gaps) >= 2, limit_s=5)
        bus.publish("t", {"after": True})
        assert (await received(heard, 1))[0].data == {"after": True}
        assert bus.connected
    finally:
        await bus.aclose()


@pytest.mark.postgres
async def test_postgres_reconnects_and_reports_the_gap() -> None:
    import psycopg

    url = postgres_url()
    channel = f"bastion_test_{secrets.token_hex(4)}"
    bus = PostgresBus(url, channel, reconnect_max_s=0.1)
    gaps: list[int] = []
    bus.on_gap(lambda: gaps.append(1))
    await bus.start()
    try:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query LIKE %s AND pid <> pg_backend_pid()",
                (f'LISTEN "{channel}"%',),
            )
        await eventually(lambda: len(gaps) >= 2, limit_s=10)
        assert bus.connected
    finally:
        await bus.aclose()


async def test_an_unreachable_server_leaves_the_bus_down_and_unhealthy() -> None:
    bus = RedisBus("redis://127.0.0.1:1/0", "c", reconnect_max_s=0.1)
    started = asyncio.get_running_loop().time()
    await bus.start()
    try:
        assert asyncio.get_running_loop().time() - started < 6
        assert not bus.connected
        with pytest.raises(ConnectionError):
            await bus.healthy()
    finally:
        await bus.aclose()


def settings(**values: Any) -> Settings:
    return Settings.model_validate(values)


def test_auto_picks_redis_then_postgres_then_memory() -> None:
    pg = {"url": "postgresql://u@h/db"}
    assert make_bus(settings(redis={"url": "redis://h"}), "a").backend == "redis"
    assert make_bus(settings(database=pg), "a").backend == "postgres"
    assert make_bus(settings(), "shop app").channel == "bastion_shop_app"
    assert make_bus(settings(), "a").backend == "memory"
    with pytest.raises(ValueError, match="needs a PostgreSQL database"):
        make_bus(settings(pubsub={"backend": "postgres"}), "a")
    with pytest.raises(ValueError, match="needs \\[redis\\] url"):
        make_bus(settings(pubsub={"backend": "redis"}), "a")
