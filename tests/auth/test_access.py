"""Permissions, ownership and the session backends behind the login endpoints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from bastion import App, Principal
from bastion.auth.ownership import owned
from bastion.errors import NotAuthenticated, NotFound
from bastion.testing import BastionClient
from examples.shop.app import app as shop

ADMIN = Principal("1", permissions=frozenset({"read:all", "write:all"}))
ANN = Principal("2", permissions=frozenset({"read:public", "write:own"}))
BOB = Principal("3", permissions=frozenset({"read:public", "write:own"}))


@dataclass
class Note:
    user_id: int


def test_all_covers_own_and_public_but_not_the_reverse() -> None:
    assert ADMIN.allows("write:own")
    assert ADMIN.allows("read:public")
    assert not ADMIN.allows("delete:own")
    assert ANN.allows("write:own")
    assert not ANN.allows("write:all")
    assert not ANN.has("read:all")


def test_owned_returns_the_owners_object_and_hides_others() -> None:
    note = Note(user_id=2)
    assert owned(note, ANN, action="write") is note
    assert owned(note, ADMIN, action="write") is note
    with pytest.raises(NotFound):
        owned(note, BOB, action="write")
    with pytest.raises(NotFound):
        owned(None, ANN)
    with pytest.raises(NotAuthenticated):
        owned(note, None)


@pytest.fixture
def bastion_app() -> App:
    return shop


@pytest.fixture
def bastion_settings_overrides() -> dict[str, Any]:
    return {"shop": {"seed_demo_data": False}}


PASSWORD = "correct horse battery staple"


@pytest.mark.parametrize("backend", ["database", "memory", "redis"])
async def test_login_works_on_every_session_backend(
    make_runtime: Any, backend: str, request: pytest.FixtureRequest
) -> None:
    sections: dict[str, Any] = {"auth": {"session_backend": backend}}
    if backend == "redis":
        sections["redis"] = {"url": request.getfixturevalue("redis_url")}
    runtime = make_runtime(**sections)
    await runtime.startup()
    async with BastionClient(runtime.asgi()) as client:
        credentials = {"email": "ann@example.com", "password": PASSWORD}
        assert (await client.post("/api/v1/auth/register", json=credentials)).status_code == 201
        login = await client.post("/api/v1/auth/login", json=credentials)
        assert login.status_code == 200
        me = await client.get("/api/v1/me")
        assert me.json()["email"] == "ann@example.com"
        revoked = await runtime.authenticator.revoke_everything(me.json()["id"])
        assert revoked["sessions"] == 1
        assert (await client.get("/api/v1/me")).status_code == 401


async def test_an_unreachable_session_store_is_a_503_not_a_crash(make_runtime: Any) -> None:
    runtime = make_runtime(
        auth={"session_backend": "redis"}, redis={"url": "redis://127.0.0.1:1/0"}
    )
    await runtime.startup()
    async with BastionClient(runtime.asgi(), cookies={"bastion_session": "x" * 43}) as client:
        response = await client.get("/api/v1/categories")
    assert response.status_code == 503
    assert response.json()["code"] == "service_unavailable"


async def test_api_key_use_is_recorded_once_a_minute(client: BastionClient, clock: Any) -> None:
    credentials = {"email": "ann@example.com", "password": PASSWORD}
    await client.post("/api/v1/auth/register", json=credentials)
    access = (await client.post("/api/v1/auth/token", json=credentials)).json()["access_token"]
    auth = {"Authorization": f"Bearer {access}"}
    made = await client.post(
        "/api/v1/api-keys", json={"name": "ci", "scopes": ["read:public"]}, headers=auth
    )
    key = {"X-API-Key": made.json()["key"]}

    async def last_used() -> str:
        listed = (await client.get("/api/v1/api-keys", headers=auth)).json()
        return str(listed[0]["last_used_at"])

    assert (await client.get("/api/v1/me", headers=key)).status_code == 200
    first = await last_used()
    clock.shift(30)
    await client.get("/api/v1/me", headers=key)
    assert await last_used() == first
    clock.shift(31)
    await client.get("/api/v1/me", headers=key)
    assert await last_used() > first


async def test_the_test_client_signs_in_like_a_browser_or_with_a_token(
    client: BastionClient,
) -> None:
    credentials = {"email": "ann@example.com", "password": PASSWORD}
    await client.post("/api/v1/auth/register", json=credentials)
    user = await client.sign_in(**credentials)
    assert user["email"] == "ann@example.com"
    made = await client.post("/api/v1/api-keys", json={"name": "k", "scopes": ["read:public"]})
    assert made.status_code == 201  # the CSRF token went along
    client.cookies.clear()
    del client.headers["X-CSRF-Token"]
    await client.bearer(**credentials)
    assert (await client.get("/api/v1/me")).json()["email"] == "ann@example.com"


async def test_login_rehashes_a_password_made_with_older_parameters(make_runtime: Any) -> None:
    from bastion.auth import User

    credentials = {"email": "ann@example.com", "password": PASSWORD}
    old = make_runtime()
    await old.startup()
    async with BastionClient(old.asgi()) as client:
        assert (await client.post("/api/v1/auth/register", json=credentials)).status_code == 201

    def stored_hash() -> str:
        with old.database.read_transaction() as session:
            user = session.query(User).filter_by(email="ann@example.com").one()
            assert user.password_hash is not None
            return user.password_hash

    before = stored_hash()
    stronger = make_runtime(auth={"argon2_time_cost": 2})
    assert stronger.passwords.needs_rehash(before)
    async with BastionClient(stronger.asgi()) as client:
        assert (await client.post("/api/v1/auth/token", json=credentials)).status_code == 200
    after = stored_hash()
    assert after != before
    assert not stronger.passwords.needs_rehash(after)
    assert stronger.passwords.verify(after, PASSWORD)
