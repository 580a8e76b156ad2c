"""The shop's payment gateway as a real process on loopback.

``payment_gateway`` is one process for the whole session, reset before each test, with
webhooks off. ``start_payment_gateway(webhook_url=..., webhook_secret=...)`` starts a
process of the test's own, for tests that receive its webhooks; it is stopped at the
test's end. Both run ``python -m examples.shop.gateway`` exactly as ``make run`` does,
so the tests cover the command, not just the app object.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest

from bastion.testing.client import free_port
from tests.support.processes import ServiceProcess, http_ok

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_WEBHOOK_SECRET = "whsec_test"


class PaymentGatewayProcess:
    """One gateway process; :meth:`start` it and :meth:`stop` it."""

    def __init__(self, *, webhook_url: str = "", webhook_secret: str = TEST_WEBHOOK_SECRET) -> None:
        self.port = free_port()
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self._service = ServiceProcess()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 15.0) -> None:
        """Start the process and wait until it answers."""
        self._service.start(
            [sys.executable, "-m", "examples.shop.gateway", "--port", str(self.port)],
            cwd=REPO_ROOT,
            # The webhook settings go through the environment, as ``make run`` shares the
            # secret with the shop.
            env={
                **os.environ,
                "SHOP_WEBHOOK_URL": self.webhook_url,
                "SHOP_GATEWAY_WEBHOOK_SECRET": self.webhook_secret,
                "PYTHONUNBUFFERED": "1",
            },
            ready=http_ok(f"{self.url}/_control"),
            name="payment gateway",
            timeout_s=timeout_s,
        )

    def stop(self) -> None:
        """Terminate the process (and close its log)."""
        self._service.stop()

    def control(self, mode: str, failures: int = 0, delay_s: float | None = None) -> dict[str, Any]:
        """Set the failure mode (``ok``, ``fail_500``, ``timeout``, ``flaky``)."""
        body: dict[str, Any] = {"mode": mode, "failures": failures}
        if delay_s is not None:
            body["delay_s"] = delay_s
        response = httpx.post(f"{self.url}/_control", json=body)
        response.raise_for_status()
        return dict(response.json())

    def charges(self) -> list[dict[str, Any]]:
        """Every charge the gateway has made, with its refunds."""
        response = httpx.get(f"{self.url}/_charges")
        response.raise_for_status()
        return list(response.json()["data"])

    def reset(self) -> None:
        """Forget all charges and keys, cancel pending webhooks, back to mode ``ok``."""
        httpx.post(f"{self.url}/_reset").raise_for_status()

    def log(self) -> str:
        """The process's output so far (one line per request), for failure messages."""
        return self._service.log()


class StartPaymentGateway(Protocol):
    def __call__(
        self, *, webhook_url: str = "", webhook_secret: str = TEST_WEBHOOK_SECRET
    ) -> PaymentGatewayProcess: ...


@pytest.fixture
def start_payment_gateway() -> Iterator[StartPaymentGateway]:
    """Starts gateway processes of the test's own (webhooks to ``webhook_url``)."""
    started: list[PaymentGatewayProcess] = []

    def start(
        *, webhook_url: str = "", webhook_secret: str = TEST_WEBHOOK_SECRET
    ) -> PaymentGatewayProcess:
        gateway = PaymentGatewayProcess(webhook_url=webhook_url, webhook_secret=webhook_secret)
        started.append(gateway)
        gateway.start()
        return gateway

    try:
        yield start
    finally:
        for gateway in started:
            gateway.stop()


@pytest.fixture(scope="session")
def _payment_gateway_process() -> Iterator[PaymentGatewayProcess]:
    gateway = PaymentGatewayProcess()
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture
def payment_gateway(_payment_gateway_process: PaymentGatewayProcess) -> PaymentGatewayProcess:
    """The session's gateway process (webhooks off), reset to an empty state in mode ``ok``."""
    _payment_gateway_process.reset()
    return _payment_gateway_process
