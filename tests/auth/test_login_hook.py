"""``use_auth(on_login=...)``: run at every sign-in, in a transaction, before the session.

A hook that raises fails the login: its writes roll back, no session is started and
the browser keeps the session (and the data) it had, so the login can be tried again.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import ForeignKey, String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from bastion import App, BastionError, Context, Runtime
from bastion.auth import User
from bastion.auth.sessions.database import SessionRow
from bastion.testing import BastionClient
from tests.support.oidc import OidcTestProvider

pytestmark = pytest.mark.db

PASSWORD = "correct horse battery staple"


class Base(DeclarativeBase):
    pass


class Arrival(Base):
    """What the hook writes: a user's sign-in and the stash it took from the session."""

    __tablename__ = "arrivals"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey(User.id))
    stash: Mapped[str | None] = mapped_column(String(50))


class Hook:
    """The app's login hook, told per test how to behave."""

    failure: Exception | None = None
    seen: list[tuple[int, str, dict[str, Any]]] = []

    def __call__(self, session: Session, user: User, data: dict[str, Any]) -> None:
        self.seen.append((user.id, user.email, dict(data)))
        session.add(Arrival(user_id=user.id, stash=data.pop("stash", None)))
        session.flush()
        if self.failure is not None:
            raise self.failure


hook = Hook()
app = App("arrivals", metadata=Base.metadata)
app.use_auth(on_login=hook)


@app.mutation("/stash", status_code=200)
def stash(ctx: Context) -> None:
    """Put something in the visitor's session for the hook to find."""
    assert ctx.session_data is not None
    ctx.session_data["stash"] = "anonymous-cart"
    ctx.session_data["kept"] = True


@pytest.fixture
def bastion_app() -> App:
    return app


@pytest.fixture(autouse=True)
def reset_hook() -> None:
    hook.failure = None
    hook.seen = []


async def _visitor_with_account(client: BastionClient) -> None:
    await client.get("/api/v1/session")
    assert (await client.post("/api/v1/stash")).status_code == 200
    credentials = {"email": "ann@example.com", "password": PASSWORD}
    assert (await client.post("/api/v1/auth/register", json=credentials)).status_code == 201


async def _login(client: BastionClient) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/login", json={"email": "ann@example.com", "password": PASSWORD}
    )


def _arrivals(runtime: Runtime) -> list[tuple[int, str | None]]:
    with runtime.database.read_transaction() as session:
        return [(a.user_id, a.stash) for a in session.scalars(select(Arrival))]


def _stored_sessions(runtime: Runtime) -> int:
    with runtime.database.read_transaction() as session:
        return session.scalar(select(func.count()).select_from(SessionRow)) or 0


async def test_the_hook_sees_the_user_and_shapes_the_new_sessions_data(
    client: BastionClient, runtime: Runtime
) -> None:
    await _visitor_with_account(client)
    login = await _login(client)
    assert login.status_code == 200
    user_id = login.json()["user"]["id"]
    [(seen_id, seen_email, seen_data)] = hook.seen
    assert (seen_id, seen_email) == (user_id, "ann@example.com")
    assert seen_data["stash"] == "anonymous-cart"
    # Its write committed, and what it popped is gone from the new session only.
    assert _arrivals(runtime) == [(user_id, "anonymous-cart")]
    session = (await client.get("/api/v1/session")).json()
    assert session["signed_in"] is True
    assert "stash" not in session["data"]
    assert session["data"]["kept"] is True
    assert _stored_sessions(runtime) == 1


async def test_a_failing_hook_fails_the_login_with_nothing_half_done(
    client: BastionClient, runtime: Runtime
) -> None:
    await _visitor_with_account(client)
    hook.failure = RuntimeError("the hook's dependency is down")
    failed = await _login(client)
    assert failed.status_code == 500
    assert failed.json()["code"] == "internal_error"
    assert "set-cookie" not in failed.headers
    # The hook's write rolled back; no signed-in session exists; the visitor's session
    # is the one it had, with the data the hook popped still in it.
    assert _arrivals(runtime) == []
    assert (await client.get("/api/v1/me")).status_code == 401
    session = (await client.get("/api/v1/session")).json()
    assert session["signed_in"] is False
    assert session["data"]["stash"] == "anonymous-cart"
    assert _stored_sessions(runtime) == 1

    hook.failure = None
    retried = await _login(client)
    assert retried.status_code == 200
    assert _arrivals(runtime) == [(retried.json()["user"]["id"], "anonymous-cart")]


async def test_a_hook_may_refuse_a_login_with_its_own_error(
    client: BastionClient, runtime: Runtime
) -> None:
    await _visitor_with_account(client)
    hook.failure = BastionError("permission_denied")
    refused = await _login(client)
    assert refused.status_code == 403
    assert refused.json()["code"] == "permission_denied"
    assert _arrivals(runtime) == []
    assert (await client.get("/api/v1/me")).status_code == 401


async def test_a_failed_password_never_reaches_the_hook(client: BastionClient) -> None:
    await _visitor_with_account(client)
    wrong = await client.post(
        "/api/v1/auth/login", json={"email": "ann@example.com", "password": "not it at all"}
    )
    assert wrong.status_code == 401
    assert hook.seen == []


async def test_an_oidc_sign_in_runs_the_hook_too(
    make_runtime: Any, oidc_provider: OidcTestProvider
) -> None:
    runtime = make_runtime(oidc={"providers": {"test": oidc_provider.settings()}})
    await runtime.startup()
    async with BastionClient(runtime.asgi()) as client:
        await client.get("/api/v1/session")
        await client.post("/api/v1/stash")
        started = await client.get("/api/v1/auth/oidc/test/login")
        async with httpx.AsyncClient() as browser:
            callback = await oidc_provider.login(browser, started.headers["location"], "alice")
        parts = urlsplit(callback)
        signed_in = await client.get(f"{parts.path}?{parts.query}")
        assert signed_in.status_code == 200, signed_in.text
        user_id = signed_in.json()["user"]["id"]
        assert [(seen[0], seen[1]) for seen in hook.seen] == [(user_id, "alice@example.com")]
        assert _arrivals(runtime) == [(user_id, "anonymous-cart")]
        session = (await client.get("/api/v1/session")).json()
        assert session["signed_in"] is True
        assert "stash" not in session["data"]
