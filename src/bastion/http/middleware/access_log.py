"""One structured log line per request: method, route template, status, duration."""

from __future__ import annotations

import time
from typing import Any

from bastion.http.middleware.status import StatusWatch
from bastion.observability.logs import get_logger
from bastion.types import ASGIApp, Receive, Scope, Send


class AccessLogMiddleware:
    """Log ``request`` with ``route`` (the template, not the raw path) for grouping."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.log = get_logger("bastion.access")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        watch = StatusWatch(send)

        try:
            await self.app(scope, receive, watch)
        finally:
            route: Any = scope.get("route")
            client = scope.get("client")
            self.log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                route=getattr(route, "path", None),
                status=watch.code,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                client=client[0] if client else None,
            )
