"""A served realtime app and signed-in users on it."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import httpx
import pytest

from bastion import App
from tests.realtime.apps import app


@pytest.fixture
def bastion_app() -> App:
    return app


@dataclass
class User:
    email: str
    token: str
    id: str

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


PASSWORD = "correct horse battery staple"


async def sign_up(base_url: str) -> User:
    """Register a user on the served app and get an access token."""
    email = f"u{secrets.token_hex(4)}@example.com"
    async with httpx.AsyncClient(base_url=base_url + "/api/v1") as http:
        created = await http.post(
            "/auth/register", json={"email": email, "password": PASSWORD, "name": "U"}
        )
        assert created.status_code == 201, created.text
        token = await http.post("/auth/token", json={"email": email, "password": PASSWORD})
        assert token.status_code == 200, token.text
        return User(email, token.json()["access_token"], str(created.json()["id"]))
