"""Settings that put the query cache in the test Redis, under a prefix no other test uses."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import redis


@pytest.fixture
def redis_cache(redis_url: str) -> Iterator[dict[str, Any]]:
    """Overrides for ``[cache] backend = "redis"``; the prefix's keys are deleted afterwards."""
    prefix = f"bastion-test:{secrets.token_hex(6)}:"
    yield {"redis": {"url": redis_url}, "cache": {"backend": "redis", "prefix": prefix}}
    client = redis.Redis.from_url(redis_url)
    try:
        names = list(client.scan_iter(match=f"{prefix}*"))
        if names:
            client.delete(*names)
    finally:
        client.close()
