"""Limits a function declares (``rate_limit="3/minute"``): per caller and function, checked
before the function runs, with the headers of the tightest limit of the request."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel
from structlog.testing import capture_logs

from bastion import App, Context
from bastion.auth.principal import Principal
from bastion.testing import BastionClient, RuntimeFactory

limited = App("limited")
calls: list[str] = []


class Out(BaseModel):
    ok: bool


@limited.query("/scarce", rate_limit="3/minute")
def scarce(ctx: Context) -> Out:
    calls.append("scarce")
    return Out(ok=True)


@limited.query("/plenty")
def plenty(ctx: Context) -> Out:
    return Out(ok=True)


@limited.action("/ping", rate_limit="2/minute")
async def ping(ctx: Context) -> Out:
    return Out(ok=True)


@pytest.fixture
def bastion_app() -> App:
    return limited


@pytest.fixture
def bastion_settings_overrides() -> dict[str, Any]:
    return {
        "ratelimit": {"default_limits": ["100/minute"], "user_limits": ["100/minute"]},
        "server": {"trusted_proxies": ["127.0.0.1"]},
    }


@pytest.fixture(autouse=True)
def no_calls() -> None:
    calls.clear()


def test_the_declaration_keeps_the_parsed_limit() -> None:
    (item,) = limited.spec("scarce").rate_limit
    assert (item.amount, item.GRANULARITY.name) == (3, "minute")
    assert limited.spec("plenty").rate_limit == ()


def test_a_malformed_limit_fails_at_declaration() -> None:
    other = App("other")
    with pytest.raises(ValueError, match="rate_limit 'often' is not a limit like '10/minute'"):

        @other.query("/x", rate_limit="often")
        def x(ctx: Context) -> Out:
            return Out(ok=True)


async def test_the_fourth_call_is_refused_before_the_function_runs(
    make_runtime: RuntimeFactory,
) -> None:
    async with BastionClient(make_runtime().asgi()) as client:
        allowed = [await client.get("/api/v1/scarce") for _ in range(3)]
        with capture_logs() as logs:
            refused = await client.get("/api/v1/scarce")
        other = await client.get("/api/v1/plenty")

    assert [r.status_code for r in allowed] == [200, 200, 200]
    # The function's limit is the tightest of the request: its headers are sent.
    assert [r.headers["ratelimit-limit"] for r in allowed] == ["3", "3", "3"]
    assert [r.headers["ratelimit-remaining"] for r in allowed] == ["2", "1", "0"]
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert (refused.headers["ratelimit-limit"], refused.headers["ratelimit-remaining"]) == (
        "3",
        "0",
    )
    assert calls == ["scarce"] * 3
    event = next(e for e in logs if e["event"] == "rate_limited")
    assert (event["kind"], event["function"], event["key"]) == (
        "function",
        "scarce",
        "fn:scarce:ip:127.0.0.1",
    )
    # Another function is not affected; it reports the caller's own limit (100, 5 used).
    assert other.status_code == 200
    assert (other.headers["ratelimit-limit"], other.headers["ratelimit-remaining"]) == (
        "100",
        "95",
    )


async def test_each_caller_has_its_own_count(make_runtime: RuntimeFactory) -> None:
    async with BastionClient(make_runtime().asgi()) as client:
        with client.acting_as(Principal("7")):
            for address in ("198.51.100.1", "198.51.100.2", "198.51.100.3"):
                await client.get("/api/v1/scarce", headers={"X-Forwarded-For": address})
            user_refused = await client.get("/api/v1/scarce")
        with client.acting_as(Principal("8")):
            other_user = await client.get("/api/v1/scarce")
        anonymous = await client.get("/api/v1/scarce", headers={"X-Forwarded-For": "198.51.100.1"})
    assert user_refused.status_code == 429
    assert other_user.status_code == 200
    assert anonymous.status_code == 200


async def test_actions_are_limited_too(make_runtime: RuntimeFactory) -> None:
    async with BastionClient(make_runtime().asgi()) as client:
        statuses = [(await client.post("/api/v1/ping")).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


async def test_direct_calls_are_not_limited(make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime()
    results = [await runtime.call("scarce") for _ in range(5)]
    assert results == [Out(ok=True)] * 5


async def test_switched_off_with_the_other_limits(make_runtime: RuntimeFactory) -> None:
    async with BastionClient(make_runtime(ratelimit={"enabled": False}).asgi()) as client:
        responses = [await client.get("/api/v1/scarce") for _ in range(5)]
    assert {r.status_code for r in responses} == {200}
    assert "ratelimit-limit" not in responses[0].headers


async def test_the_storage_down_fails_open(make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime(ratelimit={"storage_url": "redis://127.0.0.1:1/0"})
    async with BastionClient(runtime.asgi()) as client:
        responses = [await client.get("/api/v1/scarce") for _ in range(4)]
    assert {r.status_code for r in responses} == {200}
    assert calls == ["scarce"] * 4
