"""Signing in to the shop through a real OpenID Connect provider process, end to end."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import select

from bastion import App, Runtime
from bastion.auth.identities import UserIdentity
from bastion.testing import BastionClient
from examples.shop.app import app as shop
from tests.examples.shop.shoppers import jobs_named
from tests.support.oidc import OidcTestProvider

PASSWORD = "correct horse battery staple"


@pytest.fixture
def bastion_app() -> App:
    return shop


@pytest.fixture
def bastion_settings_overrides(oidc_provider: OidcTestProvider) -> dict[str, Any]:
    return {
        "shop": {"seed_demo_data": False},
        "oidc": {"providers": {"test": oidc_provider.settings()}},
    }


def local(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def sign_in(
    client: BastionClient, provider: OidcTestProvider, account: str
) -> httpx.Response:
    started = await client.get("/api/v1/auth/oidc/test/login")
    assert started.status_code == 302, started.text
    async with httpx.AsyncClient() as browser:
        callback = await provider.login(browser, started.headers["location"], account)
    return await client.get(local(callback))


async def test_sign_in_creates_then_finds_the_account(
    client: BastionClient, oidc_provider: OidcTestProvider, runtime: Runtime
) -> None:
    first = await sign_in(client, oidc_provider, "alice")
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["user"]["email"] == "alice@example.com"
    assert body["csrf_token"]
    me = await client.get("/api/v1/me")
    assert me.json()["email"] == "alice@example.com"

    # Signed in: the session acts with the CSRF token like a password login.
    key = await client.post(
        "/api/v1/api-keys",
        json={"name": "k", "scopes": ["read:public"]},
        headers={"X-CSRF-Token": body["csrf_token"]},
    )
    assert key.status_code == 201

    again = await sign_in(client, oidc_provider, "alice")
    assert again.json()["user"]["id"] == body["user"]["id"]
    # The account was created once, so it was welcomed once, like a registered one.
    welcomes = jobs_named(runtime, "bastion.send_email")
    assert [(job.args["template"], job.args["to"]) for job in welcomes] == [
        ("welcome", ["alice@example.com"])
    ]
    with runtime.database.read_transaction() as session:
        links = session.scalars(select(UserIdentity)).all()
        assert [(link.provider, link.user_id) for link in links] == [("test", body["user"]["id"])]


async def test_a_verified_email_links_the_existing_account(
    client: BastionClient, oidc_provider: OidcTestProvider
) -> None:
    registered = await client.post(
        "/api/v1/auth/register", json={"email": "carol@example.com", "password": PASSWORD}
    )
    response = await sign_in(client, oidc_provider, "carol")
    assert response.status_code == 200
    assert response.json()["user"]["id"] == registered.json()["id"]


async def test_an_unverified_email_is_refused(
    client: BastionClient, oidc_provider: OidcTestProvider
) -> None:
    response = await sign_in(client, oidc_provider, "mallory")
    assert response.status_code == 400
    assert response.json()["code"] == "oidc_failed"
    assert (await client.get("/api/v1/me")).status_code == 401


async def test_a_callback_works_once(
    client: BastionClient, oidc_provider: OidcTestProvider
) -> None:
    started = await client.get("/api/v1/auth/oidc/test/login")
    async with httpx.AsyncClient() as browser:
        callback = await oidc_provider.login(browser, started.headers["location"], "alice")
    assert (await client.get(local(callback))).status_code == 200
    replay = await client.get(local(callback))
    assert replay.status_code == 400
    assert replay.json()["code"] == "oidc_failed"


async def test_a_callback_without_a_sign_in_in_progress_is_refused(client: BastionClient) -> None:
    response = await client.get("/api/v1/auth/oidc/test/callback?code=x&state=y")
    assert response.status_code == 400
    assert response.json()["code"] == "oidc_failed"


async def test_an_unknown_provider_is_not_found(client: BastionClient) -> None:
    assert (await client.get("/api/v1/auth/oidc/nope/login")).status_code == 404


async def test_a_banned_user_cannot_sign_in(
    client: BastionClient, oidc_provider: OidcTestProvider, runtime: Runtime
) -> None:
    user = (await sign_in(client, oidc_provider, "alice")).json()["user"]
    await runtime.authenticator.revoke_everything(user["id"])
    from datetime import UTC, datetime

    from bastion.auth import User

    with runtime.database.transaction() as session:
        banned = session.get(User, user["id"])
        assert banned is not None
        banned.banned_at = datetime.now(UTC)
    response = await sign_in(client, oidc_provider, "alice")
    assert response.status_code == 401
    assert response.json()["code"] == "account_banned"
