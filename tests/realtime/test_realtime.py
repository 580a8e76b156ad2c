"""Realtime over a real WebSocket (and SSE) to a served app, on SQLite and PostgreSQL:
live query results after commits (deduplicated), per-user and public channels, refusals,
sign-outs, heartbeats, and the bounded send queue."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from bastion import Principal, Runtime
from bastion.realtime.connection import CLOSE_ORIGIN, CLOSE_SIGNED_OUT, Connection
from bastion.testing import RealtimeClient, RuntimeFactory, live_server
from tests.realtime.conftest import PASSWORD, sign_up

pytestmark = pytest.mark.anyio


async def api(base: str, method: str, path: str, user: Any = None, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base + "/api/v1") as http:
        headers = user.headers() if user is not None else {}
        return await http.request(method, path, headers=headers, **kwargs)


async def test_a_live_query_sends_its_result_then_each_changed_result(live_url: str) -> None:
    user = await sign_up(live_url)
    created = await api(live_url, "POST", "/items", user, params={"name": "lamp", "stock": 3})
    item_id = created.json()["id"]
    async with RealtimeClient.connect(live_url) as ws:
        first = await ws.subscribe(query="item", args={"item_id": item_id})
        assert first["data"] == {"id": item_id, "name": "lamp", "stock": 3}
        await api(live_url, "PATCH", f"/items/{item_id}/stock", params={"stock": 2})
        update = await ws.next(type="result")
        assert (update["query"], update["args"], update["data"]["stock"]) == (
            "item",
            {"item_id": item_id},
            2,
        )
        # A commit to its table that leaves the result as it was, and a commit to
        # another table, send nothing.
        await api(live_url, "PATCH", f"/items/{item_id}/touch")
        await api(live_url, "POST", "/unrelated")
        assert await ws.silent(0.5) == []
        await api(live_url, "PATCH", f"/items/{item_id}/stock", params={"stock": 0})
        assert (await ws.next(type="result"))["data"]["stock"] == 0


async def test_subscribers_of_one_query_share_its_runs(live_url: str) -> None:
    async with (
        RealtimeClient.connect(live_url) as one,
        RealtimeClient.connect(live_url) as two,
    ):
        assert (await one.subscribe(query="item_count"))["data"] == 0
        assert (await two.subscribe(query="item_count"))["data"] == 0
        user = await sign_up(live_url)
        await api(live_url, "POST", "/items", user, params={"name": "a"})
        assert (await one.next(type="result"))["data"] == 1
        assert (await two.next(type="result"))["data"] == 1


async def test_a_per_user_channel_reaches_every_connection_of_that_user_only(
    live_url: str,
) -> None:
    alice, bob = await sign_up(live_url), await sign_up(live_url)
    async with (
        RealtimeClient.connect(live_url, token=alice.token) as tab1,
        RealtimeClient.connect(live_url, token=alice.token) as tab2,
        RealtimeClient.connect(live_url, token=bob.token) as other,
    ):
        for ws in (tab1, tab2, other):
            assert (await ws.subscribe("inbox"))["type"] == "subscribed"
        added = await api(live_url, "POST", "/items", alice, params={"name": "pen"})
        for ws in (tab1, tab2):
            event = await ws.next(type="event")
            assert event == {
                "type": "event",
                "channel": "inbox",
                "event": "item_added",
                "data": {"id": added.json()["id"], "name": "pen"},
            }
        assert await other.silent(0.3) == []


async def test_a_rolled_back_mutation_sends_nothing(live_url: str) -> None:
    alice = await sign_up(live_url)
    async with RealtimeClient.connect(live_url, token=alice.token) as ws:
        await ws.subscribe("inbox")
        failed = await api(live_url, "POST", "/items", alice, params={"name": "boom"})
        assert failed.status_code == 409
        assert await ws.silent(0.4) == []


async def test_a_public_channel_hears_an_action_s_event_anonymously(live_url: str) -> None:
    async with RealtimeClient.connect(live_url) as ws:
        await ws.subscribe("news")
        await api(live_url, "POST", "/news", params={"text": "sale"})
        event = await ws.next(event="announcement")
        assert event["data"] == {"text": "sale"}


async def test_refusals_answer_with_stable_codes(live_url: str) -> None:
    user = await sign_up(live_url)
    async with RealtimeClient.connect(live_url) as anonymous:
        assert (await anonymous.subscribe("nope"))["code"] == "not_found"
        assert (await anonymous.subscribe("inbox"))["code"] == "not_authenticated"
        assert (await anonymous.subscribe(query="nope"))["code"] == "not_found"
        invalid = await anonymous.subscribe(query="item", args={"item_id": "seven"})
        assert invalid["code"] == "validation_failed"
        assert invalid["errors"][0]["field"] == "item_id"
        missing = await anonymous.subscribe(query="item", args={"item_id": 999})
        assert missing["code"] == "not_found"
        await anonymous.socket.send("{not json")
        assert (await anonymous.next(type="error"))["code"] == "invalid_json"
        await anonymous.send({"type": "dance"})
        assert (await anonymous.next(type="error"))["code"] == "bad_request"
    async with RealtimeClient.connect(live_url, token=user.token) as ws:
        refused = await ws.subscribe("staff")
        assert (refused["code"], refused["message"]) == (
            "permission_denied",
            "You do not have permission to do this.",
        )


@pytest.mark.parametrize("bastion_settings_overrides", [{"realtime": {"max_subscriptions": 2}}])
async def test_a_connection_holds_a_bounded_number_of_subscriptions(live_url: str) -> None:
    async with RealtimeClient.connect(live_url) as ws:
        await ws.subscribe("news")
        await ws.subscribe(query="item_count")
        refused = await ws.subscribe(query="item", args={"item_id": 1})
        assert (refused["code"], refused["limit"]) == ("too_many_subscriptions", 2)


async def test_a_token_sent_as_the_first_message_signs_the_connection_in(live_url: str) -> None:
    user = await sign_up(live_url)
    async with RealtimeClient.connect(live_url) as ws:
        await ws.send({"type": "auth", "token": user.token})
        assert (await ws.next(type="authenticated"))["user_id"] == user.id
        assert (await ws.subscribe("inbox"))["type"] == "subscribed"
        await ws.send({"type": "auth", "token": user.token})
        assert (await ws.next(type="error"))["code"] == "bad_request"
    async with RealtimeClient.connect(live_url) as ws:
        await ws.send({"type": "auth", "token": "forged"})
        assert await ws.closed() == (CLOSE_SIGNED_OUT, "token_invalid")


async def test_logout_and_ban_close_the_connections_they_authorised(live_url: str) -> None:
    user = await sign_up(live_url)
    async with httpx.AsyncClient(base_url=live_url + "/api/v1") as browser:
        login = await browser.post("/auth/login", json={"email": user.email, "password": PASSWORD})
        assert login.status_code == 200
        cookies = dict(browser.cookies)
        async with RealtimeClient.connect(live_url, cookies=cookies, origin=live_url) as ws:
            assert (await ws.subscribe("inbox"))["type"] == "subscribed"
            async with RealtimeClient.connect(
                live_url, cookies=cookies, origin="http://evil.example"
            ) as hijack:
                assert (await hijack.closed())[0] == CLOSE_ORIGIN
            csrf = login.json()["csrf_token"]
            out = await browser.post("/auth/logout", headers={"X-CSRF-Token": csrf})
            assert out.status_code == 204, out.text
            assert await ws.closed() == (CLOSE_SIGNED_OUT, "not_authenticated")
            assert ws._kept[-1]["code"] == "not_authenticated"


@pytest.mark.parametrize("bastion_settings_overrides", [{"realtime": {"heartbeat_s": 0.2}}])
async def test_heartbeats_are_sent(live_url: str) -> None:
    async with RealtimeClient.connect(live_url) as ws:
        assert (await ws.next(type="ping", within=2))["type"] == "ping"


async def test_server_sent_events_carry_the_same_messages(live_url: str) -> None:
    async with (
        httpx.AsyncClient(base_url=live_url + "/api/v1", timeout=5) as http,
        http.stream("GET", "/events", params={"channel": "news"}) as stream,
    ):
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.aiter_lines()
        await api(live_url, "POST", "/news", params={"text": "hello"})
        async with asyncio.timeout(5):
            async for line in lines:
                if line.startswith("event: announcement"):
                    data = json.loads((await anext(lines)).removeprefix("data: "))
                    assert data["data"] == {"text": "hello"}
                    break


async def test_sse_refuses_bad_arguments(live_url: str) -> None:
    bad = await api(live_url, "GET", "/events", params={"query": "item", "args": "{oops"})
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_json")


async def test_a_slow_consumer_is_disconnected_not_buffered(runtime: Runtime) -> None:
    realtime = runtime.realtime
    connection: Connection = realtime.connect(None)
    realtime.subscribe_channel(connection, "news")
    for number in range(runtime.settings.realtime.send_queue + 1):
        realtime.publish("news", "tick", {"n": number})
        await asyncio.sleep(0)
    # Nobody reads the queue: once it is full the connection is closed, not grown.
    async with asyncio.timeout(10):
        await connection.closed.wait()
    assert connection.close_reason == "slow_consumer"
    assert connection.outbox.qsize() <= runtime.settings.realtime.send_queue
    realtime.disconnect(connection)
    assert realtime.stats() == {
        "connections": 0,
        "users": 0,
        "channels": 0,
        "query_keys": 0,
        "rerunning": 0,
    }


async def test_a_ban_closes_the_user_s_connections_on_every_transport(
    make_runtime: RuntimeFactory,
) -> None:
    runtime = make_runtime()
    with live_server(runtime.asgi()) as url:
        user, other = await sign_up(url), await sign_up(url)
        async with (
            RealtimeClient.connect(url, token=user.token) as banned,
            RealtimeClient.connect(url, token=other.token) as bystander,
        ):
            await banned.subscribe("inbox")
            await bystander.subscribe("inbox")
            await runtime.authenticator.set_banned(
                int(user.id), True, actor_id="admin", reason="spam"
            )
            assert await banned.closed() == (CLOSE_SIGNED_OUT, "account_banned")
            assert banned._kept[-1]["code"] == "account_banned"
            assert await bystander.silent(0.3) == []
            reconnect = await api(url, "GET", "/items-count", user)
            assert reconnect.status_code == 401


async def test_an_expired_token_closes_its_connection_at_the_next_check(
    runtime: Runtime,
) -> None:
    realtime = runtime.realtime
    connection = realtime.connect(
        Principal("7"), token_expires_at=time.time() - 1, session_key=None
    )
    fresh = realtime.connect(Principal("8"), token_expires_at=time.time() + 60)
    realtime.recheck(connection)
    realtime.recheck(fresh)
    assert (connection.close_code, connection.close_reason) == (CLOSE_SIGNED_OUT, "token_expired")
    assert json.loads(connection.outbox.get_nowait())["code"] == "token_expired"
    assert not fresh.closed.is_set()
    for each in (connection, fresh):
        realtime.disconnect(each)
