"""Acceptance: two real ``bastion run`` processes of the shop, sharing one database and one
Redis, enforce a single count per client address, per failed-login account and per user.

Requests alternate between the servers, so every count below is only right if both
processes read and write the same counters.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import redis

from bastion import App
from bastion.testing import free_port
from examples.shop.app import app as shop

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 30.0
#: A Redis database of its own: no other test uses it, so flushing it disturbs no one.
REDIS_DB = 15
PASSWORD = "correct horse battery staple"

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def bastion_app() -> App:
    return shop


@pytest.fixture
def storage_url(redis_url: str) -> Iterator[str]:
    url = urlsplit(redis_url)._replace(path=f"/{REDIS_DB}").geturl()
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


@contextmanager
def server(env: dict[str, str], log: Path) -> Iterator[str]:
    """``bastion run`` on a free port; stopped (killed if need be) on the way out."""
    for attempt in range(3):
        port = free_port()
        command = [sys.executable, "-m", "bastion.cli", "run", "--host", "127.0.0.1"]
        with log.open("w") as output:
            process = subprocess.Popen(
                [*command, "--port", str(port)],
                cwd=ROOT,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            url = f"http://127.0.0.1:{port}"
            if _wait_until_live(process, url, log):
                yield url
                return
            if attempt == 2:
                raise AssertionError(f"could not start on a free port:\n{log.read_text()}")
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _wait_until_live(process: subprocess.Popen[bytes], url: str, log: Path) -> bool:
    """Whether the server answered; ``False`` when another process took its port."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                if "address already in use" in log.read_text().lower():
                    return False
                raise AssertionError(f"the server exited early:\n{log.read_text()}")
            try:
                if client.get(f"{url}/health/live").status_code == 200:
                    return True
            except httpx.TransportError:
                time.sleep(0.05)
    raise AssertionError(f"{url} did not answer within {STARTUP_TIMEOUT_S}s:\n{log.read_text()}")


def server_env(database_url: str, storage_url: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("BASTION_", "PYTEST_", "SHOP_"))
    }
    env.update(
        BASTION_APP="examples.shop.app:app",
        BASTION_ENV="development",
        BASTION_DATABASE_URL=database_url,
        BASTION_DATABASE_AUTO_MIGRATE="false",
        BASTION_SHOP_SEED_DEMO_DATA="false",
        SHOP_ADMIN_PASSWORD=PASSWORD,
        BASTION_AUTH_ARGON2_MEMORY_KIB="8192",
        BASTION_AUTH_ARGON2_TIME_COST="1",
        BASTION_AUTH_ARGON2_PARALLELISM="1",
        BASTION_LOG_FORMAT="json",
        BASTION_RATELIMIT_STORAGE_URL=storage_url,
        BASTION_RATELIMIT_DEFAULT_LIMITS='["10/minute"]',
        BASTION_RATELIMIT_USER_LIMITS='["5/minute"]',
        # The test is the proxy: each part below calls from addresses of its own.
        BASTION_SERVER_TRUSTED_PROXIES='["127.0.0.1"]',
    )
    return env


def address() -> dict[str, str]:
    """A fresh client address, so no part of the test shares another's bucket."""
    return {"X-Forwarded-For": f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.1"}


def test_two_processes_share_every_count(
    bastion_database_url: str, storage_url: str, tmp_path: Path
) -> None:
    env = server_env(bastion_database_url, storage_url)
    with ExitStack() as stack, httpx.Client(timeout=10.0) as http:
        one = stack.enter_context(server(env, tmp_path / "one.log"))
        two = stack.enter_context(server(env, tmp_path / "two.log"))
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
