"""``bastion auth purge``: expired sessions and refresh tokens are deleted, live ones kept."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from bastion import App, Runtime
from bastion.auth.sessions.database import SessionRow
from bastion.auth.tokens import RefreshToken
from bastion.cli.main import cli
from bastion.testing import BastionClient
from bastion.testing.clock import Clock
from examples.shop.app import app as shop

PASSWORD = "correct horse battery staple"


@pytest.fixture
def bastion_app() -> App:
    return shop


@pytest.fixture
def bastion_settings_overrides() -> dict[str, Any]:
    return {"shop": {"seed_demo_data": False}}


def counts(runtime: Runtime) -> tuple[int, int]:
    with runtime.database.read_transaction() as session:
        sessions = session.scalar(select(func.count()).select_from(SessionRow))
        tokens = session.scalar(select(func.count()).select_from(RefreshToken))
    return int(sessions or 0), int(tokens or 0)


def purge(database_url: str) -> str:
    result = CliRunner().invoke(
        cli, ["auth", "purge", "examples.shop.app:app"], env={"BASTION_DATABASE_URL": database_url}
    )
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


async def test_purge_deletes_only_what_expired(
    client: BastionClient, runtime: Runtime, bastion_database_url: str, clock: Clock
) -> None:
    credentials = {"email": "ann@example.com", "password": PASSWORD}
    await client.post("/api/v1/auth/register", json=credentials)
    await client.post("/api/v1/auth/login", json=credentials)
    await client.post("/api/v1/auth/token", json=credentials)
    assert counts(runtime) == (1, 1)
    assert purge(bastion_database_url) == "purged 0 expired sessions and 0 expired refresh tokens"
    clock.shift(days=15)  # past the session's 14-day absolute limit, not the token's 30 days
    assert purge(bastion_database_url) == "purged 1 expired sessions and 0 expired refresh tokens"
    clock.shift(days=16)
    assert purge(bastion_database_url) == "purged 0 expired sessions and 1 expired refresh tokens"
    assert counts(runtime) == (0, 0)
