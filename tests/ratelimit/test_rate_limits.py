"""Default limits per client address: headers, 429 with Retry-After, shared Redis, fail modes."""

from __future__ import annotations

from typing import Any

import pytest

from bastion import App, SettingsError, load_settings
from bastion.testing import (
    BastionClient,
    RuntimeFactory,
)
from tests.apps import app


@pytest.fixture
def bastion_app() -> App:
    return app


@pytest.fixture
def bastion_settings_overrides() -> dict[str, Any]:
    return {"ratelimit": {"default_limits": ["3/minute"]}}


async def test_headers_count_down_then_429_with_retry_after(client: BastionClient) -> None:
    remaining = []
    for _ in range(3):
        response = await client.get("/api/v1/notes/count")
        assert response.status_code == 200
        assert response.headers["ratelimit-limit"] == "3"
        remaining.append(int(response.headers["ratelimit-remaining"]))
    assert remaining == [2, 1, 0]
    refused = await client.get("/api/v1/notes/count", headers={"Accept-Language": "es"})
    assert refused.status_code == 429
    problem = refused.json()
    assert problem["code"] == "rate_limited"
    assert problem["title"] == "Demasiadas solicitudes"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["ratelimit-remaining"] == "0"
    assert refused.headers["x-request-id"] == problem["request_id"]


async def test_health_and_docs_are_never_counted(client: BastionClient) -> None:
    for _ in range(5):
        assert (await client.get("/health/live")).status_code == 200
    assert (await client.get("/api/v1/notes/count")).headers["ratelimit-remaining"] == "2"


async def test_clients_behind_a_trusted_proxy_get_their_own_buckets(
    make_runtime: RuntimeFactory,
) -> None:
    runtime = make_runtime(server={"trusted_proxies": ["127.0.0.1"]})
    async with BastionClient(runtime.asgi()) as client:
        for _ in range(3):
            await client.get("/api/v1/notes/count", headers={"X-Forwarded-For": "198.51.100.1"})
        first = await client.get("/api/v1/notes/count", headers={"X-Forwarded-For": "198.51.100.1"})
        other = await client.get("/api/v1/notes/count", headers={"X-Forwarded-For": "198.51.100.2"})
    assert first.status_code == 429
    assert other.status_code == 200


async def test_limits_can_be_switched_off(make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime(ratelimit={"enabled": False})
    async with BastionClient(runtime.asgi()) as client:
        responses = [await client.get("/api/v1/notes/count") for _ in range(5)]
    assert {r.status_code for r in responses} == {200}
    assert "ratelimit-limit" not in responses[0].headers


@pytest.mark.redis
async def test_processes_sharing_redis_share_the_count(
    make_runtime: RuntimeFactory, redis_url: str
) -> None:
    # Two runtimes stand for two processes: each has its own limiter and connection.
    # The counters live in the test run's own Redis database (see test_two_processes).
    first = make_runtime(ratelimit={"storage_url": redis_url})
    second = make_runtime(ratelimit={"storage_url": redis_url})
    await first.limiter.reset()
    statuses = []
    async with BastionClient(first.asgi()) as one, BastionClient(second.asgi()) as two:
        for client in (one, two, one, two):
            statuses.append((await client.get("/api/v1/notes/count")).status_code)
    assert statuses == [200, 200, 200, 429]
    async with BastionClient(first.asgi()) as client:
        ready = await client.get("/health/ready")
    checks = {c["name"]: c["healthy"] for c in ready.json()["checks"]}
    assert checks["rate_limit_storage"] is True
    await first.limiter.reset()


@pytest.mark.parametrize(("fail_open", "status"), [(True, 200), (False, 503)])
async def test_unreachable_storage_fails_open_or_closed(
    make_runtime: RuntimeFactory, fail_open: bool, status: int
) -> None:
    runtime = make_runtime(
        ratelimit={"storage_url": "redis://127.0.0.1:1/0", "fail_open": fail_open}
    )
    async with BastionClient(runtime.asgi()) as client:
        response = await client.get("/api/v1/notes/count")
        ready = await client.get("/health/ready")
    assert response.status_code == status
    checks = {c["name"]: c["healthy"] for c in ready.json()["checks"]}
    assert checks["rate_limit_storage"] is False
    assert ready.json()["status"] == ("degraded" if fail_open else "unhealthy")


def test_bad_limits_are_a_settings_problem() -> None:
    with pytest.raises(SettingsError) as error:
        load_settings(None, environ={"BASTION_RATELIMIT_DEFAULT_LIMITS": '["lots/ever"]'})
    assert error.value.problems[0].startswith("ratelimit.default_limits")
