"""Security headers on every response, and CORS for the configured origins only."""

from __future__ import annotations

from typing import Any

import pytest

from bastion import App, SettingsError, load_settings
from bastion.testing import BastionClient, RuntimeFactory
from tests.apps import app

ORIGIN = "https://shop.example"


@pytest.fixture
def bastion_app() -> App:
    return app


@pytest.fixture
def bastion_settings_overrides() -> dict[str, Any]:
    return {"cors": {"allow_origins": [ORIGIN]}}


async def test_api_responses_carry_the_strict_headers(client: BastionClient) -> None:
    for response in (await client.get("/api/v1/notes/count"), await client.get("/nowhere")):
        headers = response.headers
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["content-security-policy"].startswith("default-src 'none'")
        assert "strict-transport-security" not in headers, "HSTS is for production"


async def test_docs_get_a_policy_that_lets_swagger_ui_start(client: BastionClient) -> None:
    policy = (await client.get("/docs")).headers["content-security-policy"]
    assert "script-src 'self' 'unsafe-inline'" in policy
    assert "frame-ancestors 'none'" in policy


async def test_production_sends_hsts(make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime(env="production", environ={"BASTION_APP_SECRET_KEY": "p" * 40})
    async with BastionClient(runtime.asgi()) as client:
        response = await client.get("/health/live")
    assert response.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"


async def test_cors_preflight_for_an_allowed_origin(client: BastionClient) -> None:
    response = await client.options(
        "/api/v1/notes",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Idempotency-Key, Content-Type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "Idempotency-Key" in response.headers["access-control-allow-headers"]


async def test_cors_refuses_other_origins_and_covers_error_bodies(client: BastionClient) -> None:
    other = await client.get("/api/v1/notes/count", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    failed = await client.get("/plain/boom", headers={"Origin": ORIGIN})
    assert failed.status_code == 500
    assert failed.headers["access-control-allow-origin"] == ORIGIN
    assert "X-Request-ID" in failed.headers["access-control-expose-headers"]


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        (
            {"cors": {"allow_origins": ["*"]}},
            "cors.allow_origins: production must list origins, not '*'",
        ),
        ({"security": {"hsts": False}}, "security.hsts: must not be switched off in production"),
    ],
)
def test_production_refuses_open_cors_and_disabled_hsts(
    overrides: dict[str, Any], problem: str
) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings(
            None,
            env="production",
            environ={"BASTION_APP_SECRET_KEY": "p" * 40},
            overrides=overrides,
        )
    assert error.value.problems == [problem]
