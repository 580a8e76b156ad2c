"""Count every request by route template, method and final status; serve ``/metrics``.

It sits outside the error middleware, so it sees the status the client got: 500s
written by the error middleware, 401s of authentication, 429s of the rate limits. A
request refused before routing (a 429, a 413) is still counted under the template of
the route it was for; one that matches no route is counted as ``<unmatched>``.

The exposition itself is served here, before authentication, rate limits and the
router: it is not an API route (no OpenAPI entry), it is not rate limited, and scrapes
are not counted. ``[metrics] token`` and ``allow_ips`` protect it.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections.abc import Sequence
from typing import Any

import anyio.to_thread
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.routing import BaseRoute, Match

from bastion.errors import NotAuthenticated, PermissionDenied
from bastion.http.middleware.errors import RenderError
from bastion.http.middleware.status import StatusWatch
from bastion.http.state import client_address, header
from bastion.monitoring.stats import RequestStats
from bastion.observability.metrics import UNMATCHED, Metrics
from bastion.settings.sections import MetricsSection
from bastion.types import ASGIApp, Receive, Scope, Send

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class MetricsMiddleware:
    """Records each HTTP request in ``metrics`` and ``stats``; answers scrapes at ``path``.

    Args:
        metrics: The runtime's metric families.
        stats: The runtime's per-minute request statistics.
        routes: The application's routes, to name requests refused before routing.
        settings: The ``[metrics]`` section (path, token, allowed addresses).
        render: Writes the 401 and 403 problems of refused scrapes.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        stats: RequestStats,
        routes: Sequence[BaseRoute],
        settings: MetricsSection,
        render: RenderError,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.stats = stats
        self.routes = routes
        self.path = settings.path if settings.enabled else None
        self.token = settings.token.get_secret_value().encode() if settings.token else None
        self.allowed = [
            ipaddress.ip_network(entry.strip(), strict=False) for entry in settings.allow_ips
        ]
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == self.path:
            await self._scrape(scope, receive, send)
            return
        started = time.perf_counter()
        watch = StatusWatch(send)
        in_progress = self.metrics.http_in_progress
        in_progress.inc()

        try:
            await self.app(scope, receive, watch)
        finally:
            in_progress.dec()
            seconds = time.perf_counter() - started
            route = self._route(scope)
            # Clients may send any token as a method; each would be a new series.
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            self.metrics.request(route, method, watch.code, seconds)
            self.stats.record(route, method, watch.code, seconds)

    def _route(self, scope: Scope) -> str:
        route: Any = scope.get("route")
        if route is None:
            # Refused before the router ran (429, 413, 401): find the route it was for.
            # Only refused requests pay for this walk over the routes.
            for candidate in self.routes:
                match, _ = candidate.matches(scope)
                if match is not Match.NONE:
                    route = candidate
                    break
        path = getattr(route, "path", None)
        return path if isinstance(path, str) and path else UNMATCHED

    async def _scrape(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token is not None:
            given = header(scope, b"authorization") or ""
            scheme, _, credential = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                credential.strip().encode(), self.token
            ):
                await self.render(
                    scope,
                    receive,
                    send,
                    NotAuthenticated(headers={"WWW-Authenticate": 'Bearer realm="metrics"'}),
                )
                return
        if self.allowed and not self._allowed(client_address(scope)):
            await self.render(scope, receive, send, PermissionDenied())
            return
        body = await anyio.to_thread.run_sync(self.metrics.exposition)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", CONTENT_TYPE_LATEST.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _allowed(self, address: str) -> bool:
        try:
            client = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(client in network for network in self.allowed)
