"""The shop's payment gateway as a real process on loopback.

``payment_gateway`` is one process for the whole session, reset before each test, with
webhooks off. ``start_payment_gateway(webhook_url=..., webhook_secret=...)`` starts a
process of the test's own, for tests that receive its webhooks; it is stopped at the
test's end. Both run ``python -m examples.shop.gateway`` exactly as ``make run`` does,
so the tests cover the command, not just the app object.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Protocol

import httpx
import pytest

from bastion.testing.client import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_WEBHOOK_SECRET = "whsec_test"


class PaymentGatewayProcess:
    """One gateway process; :meth:`start` it and :meth:`stop` it."""

    def __init__(self, *, webhook_url: str = "", webhook_secret: str = TEST_WEBHOOK_SECRET) -> None:
        self.port = free_port()
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self._process: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 15.0) -> None:
        """Start the process and wait until it answers."""
        # Output goes to a file, not a pipe: nobody reads a pipe while tests run, and a
        # full one would stall the gateway.
        output = self._output = tempfile.TemporaryFile()  # noqa: SIM115
        self._process = subprocess.Popen(
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
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(f"{self.url}/_control", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self._process.poll() is not None or time.monotonic() > deadline:
                log = self.log()
                self.stop()
                pytest.fail(f"the payment gateway did not start:\n{log}", pytrace=False)
            time.sleep(0.05)

    def stop(self) -> None:
        """Terminate the process (and close its log)."""
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._output is not None:
            self._output.close()
            self._output = None

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
        if self._output is None:
            return ""
        self._output.flush()
        self._output.seek(0)
        return self._output.read().decode(errors="replace")


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
