"""Session data: defaults, the functions' ``ctx.session_data``, and anonymous preferences."""

from __future__ import annotations

from typing import Any

import pytest

from bastion import App, BastionError, Context
from bastion.testing import BastionClient

app = App("visits")
app.use_auth()


@app.mutation("/visits", status_code=200)
def visit(ctx: Context) -> int:
    """Count this browser's visits in its session."""
    assert ctx.session_data is not None
    ctx.session_data["visits"] = int(ctx.session_data.get("visits", 0)) + 1
    return int(ctx.session_data["visits"])


@app.mutation("/visits/broken", status_code=200)
def broken_visit(ctx: Context) -> int:
    """Changes the session, then fails: the change must not stick."""
    assert ctx.session_data is not None
    ctx.session_data["visits"] = 1000
    raise BastionError("conflict")


@app.query("/visits")
def visits(ctx: Context) -> int | None:
    return None if ctx.session_data is None else int(ctx.session_data.get("visits", 0))


@pytest.fixture
def bastion_app() -> App:
    return app


@pytest.fixture
def bastion_settings_overrides() -> dict[str, Any]:
    return {"auth": {"session_defaults": {"preferences": {"theme": "auto"}, "greeting": "hi"}}}


async def test_a_session_starts_with_the_configured_defaults(client: BastionClient) -> None:
    first = await client.get("/api/v1/session")
    assert first.status_code == 200
    body = first.json()
    assert body["signed_in"] is False
    assert body["data"] == {"preferences": {"theme": "auto"}, "greeting": "hi"}
    assert body["csrf_token"]
    assert "_csrf" not in body["data"]
    again = await client.get("/api/v1/session")
    assert again.json()["csrf_token"] == body["csrf_token"]
    assert "set-cookie" not in again.headers


async def test_functions_read_and_change_session_data(client: BastionClient) -> None:
    assert (await client.get("/api/v1/visits")).json() is None  # no session yet
    await client.get("/api/v1/session")
    assert (await client.post("/api/v1/visits")).json() == 1
    assert (await client.post("/api/v1/visits")).json() == 2
    failed = await client.post("/api/v1/visits/broken")
    assert failed.status_code == 409
    assert (await client.get("/api/v1/visits")).json() == 2


async def test_anonymous_preferences_choose_the_message_language(client: BastionClient) -> None:
    await client.get("/api/v1/session")
    saved = await client.patch("/api/v1/session/preferences", json={"language": "es"})
    assert saved.status_code == 200
    assert saved.json() == {"theme": "auto", "language": "es"}
    invalid = await client.patch("/api/v1/session/preferences", json={"language": "xx"})
    assert invalid.status_code == 422
    assert invalid.json()["title"] == "Error de validación"


async def test_session_data_survives_login_into_the_new_session(client: BastionClient) -> None:
    await client.get("/api/v1/session")
    await client.post("/api/v1/visits")
    credentials = {"email": "ann@example.com", "password": "correct horse battery staple"}
    assert (await client.post("/api/v1/auth/register", json=credentials)).status_code == 201
    login = await client.post("/api/v1/auth/login", json=credentials)
    assert login.status_code == 200
    session = (await client.get("/api/v1/session")).json()
    assert session["signed_in"] is True
    assert session["data"]["visits"] == 1
    # Signed in, a write through the cookie needs the CSRF token.
    refused = await client.post("/api/v1/visits")
    assert refused.json()["code"] == "csrf_failed"
    counted = await client.post(
        "/api/v1/visits", headers={"X-CSRF-Token": login.json()["csrf_token"]}
    )
    assert counted.json() == 2
