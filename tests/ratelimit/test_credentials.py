"""Real credentials against the shop: an API key is counted under its own id, apart from its
owner's bearer token and from the owner's other keys, and its secret is never logged."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from bastion import App
from bastion.testing import BastionClient
from examples.shop.app import app as shop

PASSWORD = "correct horse battery staple"
URL = "/api/v1/categories"


@pytest.fixture
def bastion_app() -> App:
    return shop


@pytest.fixture
def bastion_settings_overrides() -> dict[str, Any]:
    return {
        "shop": {"seed_demo_data": False},
        "ratelimit": {
            "default_limits": ["100/minute"],
            "user_limits": ["4/minute"],
            "api_key_limits": ["2/minute"],
        },
    }


async def bearer_for(client: BastionClient, email: str) -> dict[str, str]:
    body = {"email": email, "password": PASSWORD}
    registered = await client.post("/api/v1/auth/register", json={**body, "name": "N"})
    assert registered.status_code == 201, registered.text
    pair = await client.post("/api/v1/auth/token", json=body)
    assert pair.status_code == 200, pair.text
    return {"Authorization": f"Bearer {pair.json()['access_token']}"}


async def new_key(client: BastionClient, auth: dict[str, str]) -> tuple[int, str]:
    made = await client.post(
        "/api/v1/api-keys", json={"name": "ci", "scopes": ["read:public"]}, headers=auth
    )
    assert made.status_code == 201, made.text
    return made.json()["id"], made.json()["key"]


async def test_api_keys_are_counted_per_key(client: BastionClient) -> None:
    auth = await bearer_for(client, "ann@example.com")
    first_id, first = await new_key(client, auth)
    _second_id, second = await new_key(client, auth)

    with capture_logs() as logs:
        with_first = [await client.get(URL, headers={"X-API-Key": first}) for _ in range(3)]
    with_second = await client.get(URL, headers={"X-API-Key": second})
    with_bearer = await client.get(URL, headers=auth)

    assert [r.status_code for r in with_first] == [200, 200, 429]
    assert [r.headers["ratelimit-limit"] for r in with_first] == ["2", "2", "2"]
    assert [r.headers["ratelimit-remaining"] for r in with_first] == ["1", "0", "0"]
    assert (with_second.status_code, with_second.headers["ratelimit-remaining"]) == (200, "1")
    # The bearer token is the user's budget: two key creations and this request used 3 of 4.
    assert with_bearer.status_code == 200
    assert (with_bearer.headers["ratelimit-limit"], with_bearer.headers["ratelimit-remaining"]) == (
        "4",
        "1",
    )
    limited = [e for e in logs if e["event"] == "rate_limited"]
    assert [(e["kind"], e["key"]) for e in limited] == [("key", f"key:{first_id}")]
    assert first not in repr(logs)


async def test_a_user_with_a_bearer_token_is_counted_by_user(client: BastionClient) -> None:
    ann = await bearer_for(client, "ann@example.com")
    bob = await bearer_for(client, "bob@example.com")
    ann_statuses = [(await client.get(URL, headers=ann)).status_code for _ in range(5)]
    bob_response = await client.get(URL, headers=bob)
    anonymous = await client.get(URL)
    assert ann_statuses == [200, 200, 200, 200, 429]
    assert (bob_response.status_code, bob_response.headers["ratelimit-remaining"]) == (200, "3")
    # The address paid only for anonymous requests: two registrations, two tokens and this.
    assert anonymous.headers["ratelimit-limit"] == "100"
    assert anonymous.headers["ratelimit-remaining"] == "95"
