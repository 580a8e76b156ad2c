"""Login timing: an unknown email costs what a wrong password costs.

Both paths run one argon2id verification (the unknown email against a dummy hash),
so an attacker cannot enumerate accounts by timing logins.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import pytest

from bastion import App
from bastion.testing import BastionClient
from examples.shop.app import app as shop

ROUNDS = 50
PASSWORD = "correct horse battery staple"


@pytest.fixture
def bastion_app() -> App:
    return shop


@pytest.fixture
def bastion_settings_overrides() -> dict[str, Any]:
    # Real (OWASP minimum) argon2 cost, so the hash dominates as it does in production;
    # rate limits off, or the sixth failure would answer 429 without any hashing.
    return {
        "shop": {"seed_demo_data": False},
        "ratelimit": {"enabled": False},
        "auth": {"argon2_memory_kib": 19_456, "argon2_time_cost": 2, "argon2_parallelism": 1},
    }


async def test_unknown_email_and_wrong_password_take_the_same_time(
    client: BastionClient, record_property: Any
) -> None:
    registered = await client.post(
        "/api/v1/auth/register", json={"email": "ann@example.com", "password": PASSWORD}
    )
    assert registered.status_code == 201
    attempts = {
        "unknown_email": {"email": "nobody@example.com", "password": PASSWORD},
        "wrong_password": {"email": "ann@example.com", "password": "not the password at all"},
    }
    for body in attempts.values():  # warm-up: the dummy hash is made on first use
        await client.post("/api/v1/auth/login", json=body)

    timings: dict[str, list[float]] = {name: [] for name in attempts}
    # Interleaved, so a burst of load on a noisy machine hits both kinds alike.
    for _ in range(ROUNDS):
        for name, body in attempts.items():
            started = time.perf_counter()
            response = await client.post("/api/v1/auth/login", json=body)
            timings[name].append(time.perf_counter() - started)
            assert response.status_code == 401
            assert response.json()["code"] == "invalid_credentials"

    unknown = statistics.median(timings["unknown_email"])
    wrong = statistics.median(timings["wrong_password"])
    difference = abs(unknown - wrong) / max(unknown, wrong)
    report = (
        f"login timing, median of {ROUNDS}: unknown email {unknown * 1000:.2f} ms, "
        f"wrong password {wrong * 1000:.2f} ms, difference {difference:.1%}"
    )
    print(report)
    record_property("login_timing", report)
    assert difference < 0.10, report
