"""Readiness checks a real Redis when one is configured."""

from __future__ import annotations

import pytest

from bastion import App
from bastion.testing import (
    BastionClient,
    RuntimeFactory,
)
from tests.apps import app


@pytest.fixture
def bastion_app() -> App:
    return app


@pytest.mark.redis
async def test_ready_checks_redis(make_runtime: RuntimeFactory, redis_url: str) -> None:
    async with BastionClient(make_runtime(redis={"url": redis_url}).asgi()) as client:
        checks = {c["name"]: c for c in (await client.get("/health/ready")).json()["checks"]}
    assert checks["redis"]["healthy"] is True


async def test_ready_is_503_when_redis_is_unreachable(make_runtime: RuntimeFactory) -> None:
    async with BastionClient(make_runtime(redis={"url": "redis://127.0.0.1:1/0"}).asgi()) as client:
        response = await client.get("/health/ready")
    assert response.status_code == 503
    checks = {c["name"]: c for c in response.json()["checks"]}
    assert checks["redis"]["healthy"] is False
    assert checks["database"]["healthy"] is True
