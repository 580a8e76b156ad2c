"""Fixtures for alert tests: the test app, a Slack-compatible receiver on loopback, and
helpers that record request statistics and read alert state."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bastion import App, Runtime
from bastion.alerts import AlertEventRow, AlertStateRow, alert_history, alert_states
from bastion.monitoring.tables import RequestStatsRow
from bastion.observability.metrics import LATENCY_BUCKETS_S
from bastion.testing import live_server
from tests.alerts.apps import app


@pytest.fixture
def bastion_app() -> App:
    return app


@pytest.fixture
def bastion_settings_overrides() -> dict[str, Any]:
    return {
        "mail": {"backend": "memory"},
        "jobs": {"poll_interval_s": 0.05, "lease_s": 3, "shutdown_grace_s": 1},
        "integrations": {"timeout_s": 2, "connect_timeout_s": 1},
    }


class SlackPeer:
    """An incoming-webhook endpoint: records every JSON body, answers ``status``."""

    def __init__(self) -> None:
        self.url = ""
        self.status = 200
        self.received: list[dict[str, Any]] = []
        self.app = Starlette(routes=[Route("/hook", self._receive, methods=["POST"])])

    async def _receive(self, request: Request) -> Response:
        self.received.append(json.loads(await request.body()))
        return Response("ok", status_code=self.status)

    @property
    def texts(self) -> list[str]:
        return [body["text"] for body in self.received]


@pytest.fixture
def slack() -> Iterator[SlackPeer]:
    peer = SlackPeer()
    with live_server(peer.app) as base_url:
        peer.url = f"{base_url}/hook"
        yield peer


def record_traffic(
    runtime: Runtime,
    minute: datetime,
    *,
    requests: int,
    errors: int = 0,
    latency_s: float = 0.02,
    route: str = "/api/v1/fine",
) -> None:
    """Write a statistics row as a server process would: ``requests`` in ``minute``, all
    taking ``latency_s``."""
    buckets = [0] * (len(LATENCY_BUCKETS_S) + 1)
    buckets[next((i for i, b in enumerate(LATENCY_BUCKETS_S) if latency_s <= b), -1)] = requests
    with runtime.database.transaction() as session:
        session.add(
            RequestStatsRow(
                minute=minute.replace(second=0, microsecond=0),
                process="test",
                route=route,
                method="GET",
                requests=requests,
                errors=errors,
                client_errors=0,
                latency_ms_sum=requests * latency_s * 1000,
                latency_buckets=buckets,
            )
        )


def states(runtime: Runtime) -> dict[str, AlertStateRow]:
    with runtime.database.read_transaction() as session:
        return {row.rule: row for row in alert_states(session)}


def history(runtime: Runtime, rule: str | None = None) -> list[AlertEventRow]:
    """Events oldest first."""
    with runtime.database.read_transaction() as session:
        return list(reversed(alert_history(session, rule=rule)))


def minute_start() -> datetime:
    """The start of the current minute: the window every test's traffic falls in."""
    return datetime.now(UTC).replace(second=0, microsecond=0)
