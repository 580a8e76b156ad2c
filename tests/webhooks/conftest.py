"""Fixtures for webhook tests: the test app, and an endpoint on loopback that records
deliveries and answers what the test tells it to."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bastion import App, Runtime
from bastion.testing import live_server
from tests.webhooks.apps import app


@pytest.fixture
def bastion_app() -> App:
    return app


@pytest.fixture
def bastion_settings_overrides() -> dict[str, Any]:
    return {
        "jobs": {"poll_interval_s": 0.05, "lease_s": 3, "shutdown_grace_s": 1},
        "webhooks": {"max_attempts": 3, "timeout_s": 0.5},
    }


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes


class Endpoint:
    """A subscriber's endpoint: records every request, answers ``statuses`` in turn (200
    once they run out), or sleeps ``delay_s`` first."""

    def __init__(self) -> None:
        self.url = ""
        self.statuses: list[int] = []
        self.delay_s = 0.0
        self.received: list[Received] = []
        self.app = Starlette(routes=[Route("/hook", self._receive, methods=["POST"])])

    async def _receive(self, request: Request) -> Response:
        self.received.append(Received(dict(request.headers), await request.body()))
        if self.delay_s:
            await anyio.sleep(self.delay_s)
        return Response(status_code=self.statuses.pop(0) if self.statuses else 200)


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    served = Endpoint()
    with live_server(served.app) as base_url:
        served.url = f"{base_url}/hook"
        yield served


def count(runtime: Runtime, table: Any, *where: Any) -> int:
    with runtime.database.read_transaction() as session:
        return int(session.scalar(select(func.count()).select_from(table).where(*where)) or 0)
