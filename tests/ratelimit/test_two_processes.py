"""Acceptance: two real ``bastion run`` processes of the shop, sharing one database and one
Redis, enforce a single count per client address, per failed-login account and per user.

Requests alternate between the servers, so every count below is only right if both
processes read and write the same counters.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import redis
from limits.aio.storage import RedisStorage

from bastion import App
from examples.shop.app import app as shop
from tests.support.servers import bastion_server, shop_env

PASSWORD = "correct horse battery staple"

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def bastion_app() -> App:
    return shop


@pytest.fixture
def storage_url(redis_url: str) -> Iterator[str]:
    """The test Redis, without rate-limit counters before and after the test.

    Counter keys carry no per-test prefix (users of a fresh database share ids), so a
    test run keeps them apart by having a Redis database of its own (scripts/test.py
    gives the PostgreSQL pass the next one); a run's tests take turns.
    """
    client = redis.Redis.from_url(redis_url)
    _drop_counters(client)
    try:
        yield redis_url
    finally:
        _drop_counters(client)
        client.close()


def _drop_counters(client: redis.Redis) -> None:
    names = list(client.scan_iter(match=f"{RedisStorage.PREFIX}:*"))
    if names:
        client.delete(*names)


def server_env(database_url: str, storage_url: str) -> dict[str, str]:
    return shop_env(
        database_url,
        SHOP_ADMIN_PASSWORD=PASSWORD,
        BASTION_LOG_FORMAT="json",
        BASTION_RATELIMIT_STORAGE_URL=storage_url,
        BASTION_RATELIMIT_DEFAULT_LIMITS='["10/minute"]',
        BASTION_RATELIMIT_USER_LIMITS='["5/minute"]',
        # The test is the proxy: each part below calls from addresses of its own.
        BASTION_SERVER_TRUSTED_PROXIES='["127.0.0.1"]',
    )


def address() -> dict[str, str]:
    """A fresh client address, so no part of the test shares another's bucket."""
    return {"X-Forwarded-For": f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.1"}


def test_two_processes_share_every_count(
    bastion_database_url: str, storage_url: str, tmp_path: Path
) -> None:
    env = server_env(bastion_database_url, storage_url)
    with ExitStack() as stack, httpx.Client(timeout=10.0) as http:
        one = stack.enter_context(bastion_server(env, tmp_path / "one.log"))
        two = stack.enter_context(bastion_server(env, tmp_path / "two.log"))
        servers = [one, two]

        # Per client address (default_limits, 10/minute): the 11th request overall is
        # refused by whichever server it reaches.
        client = address()
        responses = [
            http.get(f"{servers[n % 2]}/api/v1/categories", headers=client) for n in range(12)
        ]
        statuses = [r.status_code for r in responses]
        assert statuses == [200] * 10 + [429, 429], [r.text for r in responses]
        remaining = [int(r.headers["ratelimit-remaining"]) for r in responses[:10]]
        assert remaining == list(range(9, -1, -1))
        assert {r.headers["ratelimit-limit"] for r in responses} == {"10"}
        assert all(1 <= int(r.headers["retry-after"]) <= 60 for r in responses[10:])

        # Failed logins (auth.login_limit, 5/hour per account and address): the sixth.
        client = address()
        wrong = {"email": f"nobody-{secrets.token_hex(4)}@example.com", "password": "wrong"}
        logins = [
            http.post(f"{servers[n % 2]}/api/v1/auth/login", json=wrong, headers=client)
            for n in range(7)
        ]
        assert [r.status_code for r in logins] == [401] * 5 + [429, 429]
        assert logins[5].json()["code"] == "rate_limited"

        # Per user (user_limits, 5/minute), from two addresses and both servers at once.
        account = {"email": f"ann-{secrets.token_hex(4)}@example.com", "password": PASSWORD}
        signup = address()
        registered = http.post(
            f"{one}/api/v1/auth/register", json={**account, "name": "Ann"}, headers=signup
        )
        assert registered.status_code == 201, registered.text
        token = http.post(f"{two}/api/v1/auth/token", json=account, headers=signup)
        assert token.status_code == 200, token.text
        bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
        homes = [address(), address()]
        mine = [
            http.get(f"{servers[n % 2]}/api/v1/me", headers={**bearer, **homes[n // 3 % 2]})
            for n in range(6)
        ]
        assert [r.status_code for r in mine] == [200] * 5 + [429]
        assert [r.headers["ratelimit-remaining"] for r in mine] == ["4", "3", "2", "1", "0", "0"]
        assert {r.headers["ratelimit-limit"] for r in mine} == {"5"}
