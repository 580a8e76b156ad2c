"""Who is counted where: users by id across addresses, anonymous callers by address, the
global ceiling over everyone, and the fail modes on the authenticated path."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from bastion import App, SettingsError, load_settings
from bastion.auth.principal import Principal
from bastion.testing import BastionClient, RuntimeFactory
from tests.apps import app

ANN = Principal("101")
BOB = Principal("102")
URL = "/api/v1/notes/count"


@pytest.fixture
def bastion_app() -> App:
    return app


@pytest.fixture
def bastion_settings_overrides() -> dict[str, Any]:
    return {
        "ratelimit": {"default_limits": ["5/minute"], "user_limits": ["3/minute"]},
        # Loopback is the in-process client's address: X-Forwarded-For picks the client.
        "server": {"trusted_proxies": ["127.0.0.1"]},
    }


def source(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


async def test_a_user_is_counted_across_addresses_and_apart_from_others(
    make_runtime: RuntimeFactory,
) -> None:
    async with BastionClient(make_runtime().asgi()) as client:
        with client.acting_as(ANN):
            ann = [await client.get(URL, headers=source(f"198.51.100.{n}")) for n in range(4)]
        with client.acting_as(BOB):
            bob = await client.get(URL, headers=source("198.51.100.1"))
        anonymous = await client.get(URL, headers=source("198.51.100.1"))

    assert [r.status_code for r in ann] == [200, 200, 200, 429]
    assert [r.headers["ratelimit-limit"] for r in ann] == ["3"] * 4
    assert [r.headers["ratelimit-remaining"] for r in ann] == ["2", "1", "0", "0"]
    assert ann[3].json()["code"] == "rate_limited"
    assert 1 <= int(ann[3].headers["retry-after"]) <= 60
    # Bob has his own budget; the address Ann used last is untouched by her requests.
    assert (bob.status_code, bob.headers["ratelimit-remaining"]) == (200, "2")
    assert anonymous.status_code == 200
    assert anonymous.headers["ratelimit-limit"] == "5"
    assert anonymous.headers["ratelimit-remaining"] == "4"


async def test_anonymous_callers_are_counted_per_address(make_runtime: RuntimeFactory) -> None:
    async with BastionClient(make_runtime().asgi()) as client:
        first = [await client.get(URL, headers=source("203.0.113.1")) for _ in range(6)]
        other = await client.get(URL, headers=source("203.0.113.2"))
    assert [r.status_code for r in first] == [200] * 5 + [429]
    assert (other.status_code, other.headers["ratelimit-remaining"]) == (200, "4")


async def test_the_global_ceiling_counts_everyone_together(make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime(ratelimit={"global_limits": ["4/minute"]})
    async with BastionClient(runtime.asgi()) as client:
        statuses = [(await client.get(URL, headers=source("203.0.113.1"))).status_code]
        with client.acting_as(ANN):
            statuses.append((await client.get(URL)).status_code)
        with client.acting_as(BOB):
            statuses.append((await client.get(URL)).status_code)
        fourth = await client.get(URL, headers=source("203.0.113.2"))
        with capture_logs() as logs, client.acting_as(BOB):
            refused = await client.get(URL)
    assert statuses == [200, 200, 200]
    # Bob's own budget has 1 left, the ceiling 0 after the fourth: the ceiling's headers win.
    assert (fourth.status_code, fourth.headers["ratelimit-remaining"]) == (200, "0")
    assert fourth.headers["ratelimit-limit"] == "4"
    assert refused.status_code == 429
    assert refused.headers["ratelimit-limit"] == "4"
    assert [(e["kind"], e["key"]) for e in logs if e["event"] == "rate_limited"] == [
        ("global", "global")
    ]


async def test_a_refused_user_is_logged_by_kind_and_id(make_runtime: RuntimeFactory) -> None:
    async with BastionClient(make_runtime().asgi()) as client:
        with client.acting_as(ANN):
            for _ in range(3):
                await client.get(URL)
            with capture_logs() as logs:
                assert (await client.get(URL)).status_code == 429
    limited = [e for e in logs if e["event"] == "rate_limited"]
    assert [(e["kind"], e["key"], e["limit"]) for e in limited] == [("user", "user:101", 3)]


@pytest.mark.parametrize(("fail_open", "status"), [(True, 200), (False, 503)])
async def test_users_fail_open_or_closed_with_the_storage_down(
    make_runtime: RuntimeFactory, fail_open: bool, status: int
) -> None:
    runtime = make_runtime(
        ratelimit={"storage_url": "redis://127.0.0.1:1/0", "fail_open": fail_open}
    )
    async with BastionClient(runtime.asgi()) as client:
        with client.acting_as(ANN):
            response = await client.get(URL)
    assert response.status_code == status
    assert "ratelimit-limit" not in response.headers
    if not fail_open:
        assert response.json()["code"] == "service_unavailable"
        assert response.headers["retry-after"] == "5"


@pytest.mark.parametrize("key", ["user_limits", "api_key_limits", "global_limits"])
def test_every_policy_is_validated(key: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings(None, environ={f"BASTION_RATELIMIT_{key.upper()}": '["lots/ever"]'})
    assert error.value.problems[0].startswith(f"ratelimit.{key}")


def test_policy_defaults() -> None:
    limits = load_settings(None, environ={}).ratelimit
    assert limits.default_limits == ["600/minute"]
    assert limits.user_limits == ["1200/minute"]
    assert limits.api_key_limits == ["600/minute"]
    assert limits.global_limits == []
