"""OIDC sign-in against a real provider process on loopback (``oidc_provider``)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import func, select
from structlog.testing import capture_logs

from bastion import App, Runtime
from bastion.auth import (
    OidcClient,
    OidcIdentity,
    User,
    UserIdentity,
    create_user,
    link_identity,
)
from bastion.errors import BastionError, NotFound
from bastion.settings import SettingsError, load_settings
from bastion.settings.sections import OidcSection
from bastion.testing import require_service
from bastion.testing.client import free_port
from tests.apps import app
from tests.support.oidc import OidcTestProvider, node_unavailable_reason


@pytest.fixture
def bastion_app() -> App:
    return app


@pytest.fixture
async def oidc(oidc_provider: OidcTestProvider) -> AsyncIterator[OidcClient]:
    client = OidcClient(OidcSection(providers={"test": oidc_provider.settings()}))
    yield client
    await client.aclose()


@pytest.fixture
async def browser() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


async def sign_in(
    oidc: OidcClient,
    provider: OidcTestProvider,
    browser: httpx.AsyncClient,
    account: str = "alice",
) -> OidcIdentity:
    started = await oidc.start("test", provider.redirect_uri)
    callback = await provider.login(browser, started.url, account)
    return await oidc.finish("test", query(callback), started.state)


async def test_sign_in_returns_the_verified_identity(
    oidc: OidcClient, oidc_provider: OidcTestProvider, browser: httpx.AsyncClient
) -> None:
    started = await oidc.start("test", oidc_provider.redirect_uri)
    sent = query(started.url)
    assert started.url.startswith(f"{oidc_provider.issuer}/auth?")
    verifier_hash = hashlib.sha256(started.state["code_verifier"].encode()).digest()
    assert sent["code_challenge"] == base64.urlsafe_b64encode(verifier_hash).decode().rstrip("=")
    assert sent["code_challenge_method"] == "S256"
    assert (sent["state"], sent["nonce"]) == (started.state["state"], started.state["nonce"])
    assert sent["redirect_uri"] == oidc_provider.redirect_uri
    assert sent["scope"] == "openid email profile"
    assert "code_verifier" not in sent

    callback = await oidc_provider.login(browser, started.url, "alice")

    assert callback.startswith(f"{oidc_provider.redirect_uri}?")
    identity = await oidc.finish("test", query(callback), started.state)
    assert identity == OidcIdentity(
        provider="test",
        subject="alice",
        email="alice@example.com",
        email_verified=True,
        name="Alice Liddell",
    )


async def test_the_state_survives_a_json_session(
    oidc: OidcClient, oidc_provider: OidcTestProvider, browser: httpx.AsyncClient
) -> None:
    started = await oidc.start("test", oidc_provider.redirect_uri)
    stored = json.loads(json.dumps(started.state))
    callback = await oidc_provider.login(browser, started.url, "alice")
    assert (await oidc.finish("test", query(callback), stored)).subject == "alice"


async def test_first_sign_in_creates_the_user_and_the_next_finds_it(
    runtime: Runtime, oidc: OidcClient, oidc_provider: OidcTestProvider
) -> None:
    found = []
    for _ in range(2):
        async with httpx.AsyncClient() as browser:
            identity = await sign_in(oidc, oidc_provider, browser, "alice")
        with runtime.database.transaction() as session:
            user = link_identity(session, identity, runtime.passwords)
            found.append((user.id, user.email, user.name, user.roles, user.password_hash))
    assert found[0] == found[1]
    assert found[0][1:] == ("alice@example.com", "Alice Liddell", ["user"], None)
    with runtime.database.read_transaction() as session:
        links = session.scalars(select(UserIdentity)).all()
        assert [(link.provider, link.subject, link.user_id) for link in links] == [
            ("test", "alice", found[0][0])
        ]


async def test_a_verified_email_links_the_existing_account(
    runtime: Runtime, oidc: OidcClient, oidc_provider: OidcTestProvider, browser: httpx.AsyncClient
) -> None:
    with runtime.database.transaction() as session:
        carol = create_user(
            session, runtime.passwords, email="carol@example.com", password="violet-lantern-42"
        )
        carol_id, password_hash = carol.id, carol.password_hash

    identity = await sign_in(oidc, oidc_provider, browser, "carol")

    assert identity.email == "Carol@Example.COM"
    with runtime.database.transaction() as session:
        user = link_identity(session, identity, runtime.passwords)
        assert (user.id, user.password_hash) == (carol_id, password_hash)
    with runtime.database.read_transaction() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 1
        link = session.scalars(select(UserIdentity)).one()
        assert (link.user_id, link.email) == (carol_id, "carol@example.com")


async def test_a_banned_user_is_returned_as_is_for_the_caller_to_refuse(
    runtime: Runtime, oidc: OidcClient, oidc_provider: OidcTestProvider, browser: httpx.AsyncClient
) -> None:
    with runtime.database.transaction() as session:
        alice = create_user(session, runtime.passwords, email="alice@example.com", password=None)
        alice.banned_at = alice.created_at

    identity = await sign_in(oidc, oidc_provider, browser, "alice")

    with runtime.database.transaction() as session:
        assert link_identity(session, identity, runtime.passwords).is_banned


async def test_an_unverified_email_is_refused_and_links_or_creates_nobody(
    runtime: Runtime, oidc: OidcClient, oidc_provider: OidcTestProvider, browser: httpx.AsyncClient
) -> None:
    identity = await sign_in(oidc, oidc_provider, browser, "mallory")
    assert (identity.email, identity.email_verified) == ("mallory@example.com", False)

    with runtime.database.transaction() as session, pytest.raises(BastionError) as error:
        link_identity(session, identity, runtime.passwords)
    assert error.value.error_code == "oidc_failed"
    with runtime.database.transaction() as session:
        create_user(
            session, runtime.passwords, email="mallory@example.com", password="violet-lantern-42"
        )
    with runtime.database.transaction() as session, pytest.raises(BastionError):
        link_identity(session, identity, runtime.passwords)
    with runtime.database.read_transaction() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 1
        assert session.scalar(select(func.count()).select_from(UserIdentity)) == 0


async def test_a_tampered_state_is_refused_and_the_reason_logged(
    oidc_provider: OidcTestProvider, browser: httpx.AsyncClient
) -> None:
    with capture_logs() as logs:
        oidc = OidcClient(OidcSection(providers={"test": oidc_provider.settings()}))
        started = await oidc.start("test", oidc_provider.redirect_uri)
        callback = query(await oidc_provider.login(browser, started.url, "alice"))

        with pytest.raises(BastionError) as error:
            await oidc.finish("test", {**callback, "state": "forged"}, started.state)
        await oidc.aclose()

    assert (error.value.error_code, error.value.detail) == ("oidc_failed", None)
    assert logs[-1]["event"] == "oidc_failed"
    assert logs[-1]["reason"] == "the state parameter does not match the session"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda state: state.update(provider="other"),
        lambda state: state.update(created_at=state["created_at"] - 601),
        lambda state: state.pop("nonce"),
        lambda state: state.update(code_verifier="x" * 64),
        lambda state: state.update(redirect_uri="http://testserver/elsewhere"),
    ],
    ids=["other-provider", "stale", "incomplete", "wrong-verifier", "wrong-redirect"],
)
async def test_a_state_that_does_not_fit_is_refused(
    oidc: OidcClient,
    oidc_provider: OidcTestProvider,
    browser: httpx.AsyncClient,
    tamper: Callable[[dict[str, Any]], object],
) -> None:
    started = await oidc.start("test", oidc_provider.redirect_uri)
    callback = query(await oidc_provider.login(browser, started.url, "alice"))
    state = dict(started.state)
    tamper(state)

    with pytest.raises(BastionError, match="oidc_failed"):
        await oidc.finish("test", callback, state)


async def test_a_wrong_nonce_is_refused(
    oidc: OidcClient, oidc_provider: OidcTestProvider, browser: httpx.AsyncClient
) -> None:
    started = await oidc.start("test", oidc_provider.redirect_uri)
    callback = query(await oidc_provider.login(browser, started.url, "alice"))

    with pytest.raises(BastionError, match="oidc_failed"):
        await oidc.finish("test", callback, {**started.state, "nonce": "not-the-one-sent"})


async def test_a_replayed_code_is_refused(
    oidc: OidcClient, oidc_provider: OidcTestProvider, browser: httpx.AsyncClient
) -> None:
    started = await oidc.start("test", oidc_provider.redirect_uri)
    callback = query(await oidc_provider.login(browser, started.url, "alice"))
    await oidc.finish("test", callback, started.state)

    with pytest.raises(BastionError, match="oidc_failed"):
        await oidc.finish("test", callback, started.state)


async def test_an_error_from_the_provider_is_refused(
    oidc: OidcClient, oidc_provider: OidcTestProvider
) -> None:
    started = await oidc.start("test", oidc_provider.redirect_uri)
    callback = {"error": "access_denied", "state": started.state["state"]}

    with pytest.raises(BastionError, match="oidc_failed"):
        await oidc.finish("test", callback, started.state)


async def test_a_callback_naming_another_issuer_is_refused(
    oidc: OidcClient, oidc_provider: OidcTestProvider, browser: httpx.AsyncClient
) -> None:
    started = await oidc.start("test", oidc_provider.redirect_uri)
    callback = query(await oidc_provider.login(browser, started.url, "alice"))

    with pytest.raises(BastionError, match="oidc_failed"):
        await oidc.finish("test", {**callback, "iss": "https://evil.example"}, started.state)


async def test_an_unreachable_provider_is_refused() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    settings = {"issuer": closed, "client_id": "bastion", "client_secret": "secret"}
    oidc = OidcClient(OidcSection(providers={"down": settings}))
    try:
        with pytest.raises(BastionError, match="oidc_failed"):
            await oidc.start("down", "http://testserver/callback")
    finally:
        await oidc.aclose()


async def test_an_unknown_provider_is_not_found(oidc: OidcClient) -> None:
    with pytest.raises(NotFound):
        await oidc.start("nope", "http://testserver/callback")
    with pytest.raises(NotFound):
        await oidc.finish("nope", {"code": "x", "state": "y"}, {})


@pytest.fixture
def second_provider(request: pytest.FixtureRequest) -> Iterator[OidcTestProvider]:
    """A provider of this test's own, to stop, restart or configure differently."""
    require_service(node_unavailable_reason())
    provider = OidcTestProvider(claims_in_id_token=getattr(request, "param", True))
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()


async def test_rotated_signing_keys_are_fetched_again(
    second_provider: OidcTestProvider, browser: httpx.AsyncClient
) -> None:
    oidc = OidcClient(OidcSection(providers={"test": second_provider.settings()}))
    try:
        assert (await sign_in(oidc, second_provider, browser)).subject == "alice"
        second_provider.restart()
        async with httpx.AsyncClient() as fresh_browser:
            assert (await sign_in(oidc, second_provider, fresh_browser)).subject == "alice"
    finally:
        await oidc.aclose()


async def test_a_provider_gone_between_start_and_finish_is_refused(
    second_provider: OidcTestProvider, browser: httpx.AsyncClient
) -> None:
    oidc = OidcClient(OidcSection(providers={"test": second_provider.settings()}))
    try:
        started = await oidc.start("test", second_provider.redirect_uri)
        callback = query(await second_provider.login(browser, started.url, "alice"))
        second_provider.stop()
        with pytest.raises(BastionError, match="oidc_failed"):
            await oidc.finish("test", callback, started.state)
    finally:
        await oidc.aclose()


@pytest.mark.parametrize("second_provider", [False], indirect=True, ids=["userinfo-only"])
async def test_claims_kept_out_of_the_id_token_come_from_userinfo(
    second_provider: OidcTestProvider, browser: httpx.AsyncClient
) -> None:
    oidc = OidcClient(OidcSection(providers={"test": second_provider.settings()}))
    try:
        identity = await sign_in(oidc, second_provider, browser, "alice")
    finally:
        await oidc.aclose()
    assert (identity.email, identity.email_verified, identity.name) == (
        "alice@example.com",
        True,
        "Alice Liddell",
    )


def provider_table(issuer: str) -> dict[str, object]:
    return {"issuer": issuer, "client_id": "bastion", "client_secret": "secret"}


@pytest.mark.parametrize(
    ("issuer", "refused"),
    [
        ("https://accounts.google.com", False),
        ("http://127.0.0.1:9000", False),
        ("http://localhost:9000/realms/shop", False),
        ("http://idp.example", True),
    ],
)
def test_production_refuses_plain_http_issuers_off_loopback(issuer: str, refused: bool) -> None:
    environ = {"BASTION_APP_SECRET_KEY": "k" * 40}
    overrides = {"oidc": {"providers": {"corp": provider_table(issuer)}}}
    problem = "oidc.providers.corp.issuer: production needs https (http only on loopback)"

    load_settings(None, env="development", environ=environ, overrides=overrides)
    if not refused:
        load_settings(None, env="production", environ=environ, overrides=overrides)
        return
    with pytest.raises(SettingsError) as error:
        load_settings(None, env="production", environ=environ, overrides=overrides)
    assert error.value.problems == [problem]


def test_provider_settings_are_checked() -> None:
    bad = {
        "Not A Key": provider_table("https://idp.example"),
        "ftp": provider_table("ftp://idp.example"),
        "scopes": {**provider_table("https://idp.example"), "scopes": ["email"]},
    }
    with pytest.raises(SettingsError) as error:
        load_settings(None, environ={}, overrides={"oidc": {"providers": bad}})
    assert error.value.problems == [
        "oidc.providers.ftp.issuer: Value error, must be an http(s):// URL (got 'ftp://idp.example')",
        "oidc.providers.scopes.scopes: Value error, must include 'openid' (got ['email'])",
    ]
    with pytest.raises(SettingsError) as error:
        load_settings(
            None, environ={}, overrides={"oidc": {"providers": {"Not A Key": bad["Not A Key"]}}}
        )
    assert error.value.problems == [
        "oidc.providers: Value error, provider key 'Not A Key': use a-z, 0-9, - and _"
    ]
