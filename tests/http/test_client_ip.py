"""X-Forwarded-For is believed only from trusted proxies."""

from __future__ import annotations

from typing import Any

import pytest

from bastion import App, SettingsError, load_settings
from bastion.http.middleware.client_ip import parse_networks, resolve_client
from bastion.testing import BastionClient, RuntimeFactory
from tests.apps import app

PROXIES = parse_networks(["10.0.0.0/8", "127.0.0.1"])


@pytest.mark.parametrize(
    ("peer", "header", "expected"),
    [
        ("203.0.113.9", "1.2.3.4", "203.0.113.9"),  # untrusted peer: header ignored
        ("10.0.0.5", "198.51.100.7", "198.51.100.7"),  # one trusted hop
        ("10.0.0.5", "6.6.6.6, 198.51.100.7, 10.0.0.9", "198.51.100.7"),  # spoofed left part
        ("10.0.0.5", "10.0.0.8, 10.0.0.9", "10.0.0.8"),  # all trusted: the leftmost
        ("10.0.0.5", "garbage, 198.51.100.7", "198.51.100.7"),
        ("10.0.0.5", "198.51.100.7, garbage", "10.0.0.5"),  # malformed hop: stop there
        ("10.0.0.5", "[2001:db8::1]:4711", "2001:db8::1"),
        ("10.0.0.5", "198.51.100.7:5555", "198.51.100.7"),
        ("10.0.0.5", None, "10.0.0.5"),
    ],
)
def test_resolution(peer: str, header: str | None, expected: str) -> None:
    assert resolve_client(peer, header, PROXIES) == expected


def test_nothing_is_trusted_by_default() -> None:
    assert resolve_client("127.0.0.1", "1.2.3.4", ()) == "127.0.0.1"


@pytest.fixture
def bastion_app() -> App:
    return app


async def test_an_untrusted_peer_cannot_spoof_its_address(client: BastionClient) -> None:
    response = await client.get("/plain/whoami", headers={"X-Forwarded-For": "1.2.3.4"})
    assert response.json()["client"] == "127.0.0.1", "loopback is not trusted by default"


async def test_a_trusted_proxy_passes_the_client_on(make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime(server={"trusted_proxies": ["127.0.0.1/32"]})
    async with BastionClient(runtime.asgi()) as client:
        response = await client.get(
            "/plain/whoami", headers={"X-Forwarded-For": "6.6.6.6, 198.51.100.7"}
        )
    assert response.json() == {"client": "198.51.100.7", "peer": "127.0.0.1"}


def test_bad_proxy_entries_are_a_settings_problem() -> None:
    overrides: dict[str, Any] = {"server": {"trusted_proxies": ["10.0.0.0/8", "not-an-ip"]}}
    with pytest.raises(SettingsError) as error:
        load_settings(None, environ={}, overrides=overrides)
    assert error.value.problems[0].startswith("server.trusted_proxies: Value error")
