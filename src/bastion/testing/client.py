"""An httpx client bound to an app in-process, and a live server on a loopback port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from bastion.auth.principal import Principal
from bastion.types import ASGIApp, Receive, Scope, Send


class IdentityInjector:
    """Test-only ASGI wrapper: makes requests arrive as a given principal.

    It exists only in-process, wrapped around the app by the test kit, so no network
    request can reach it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.principal: Principal | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.principal is not None and scope["type"] in ("http", "websocket"):
            scope.setdefault("state", {})["user"] = self.principal
        await self.app(scope, receive, send)


class BastionClient(httpx.AsyncClient):
    """``httpx.AsyncClient`` against the ASGI app, with :meth:`acting_as`."""

    def __init__(self, app: ASGIApp, **kwargs: Any) -> None:
        self._identity = IdentityInjector(app)
        transport = httpx.ASGITransport(app=self._identity, client=("127.0.0.1", 50000))
        super().__init__(
            transport=transport, base_url=kwargs.pop("base_url", "http://testserver"), **kwargs
        )

    async def sign_in(self, email: str, password: str, *, prefix: str = "/api/v1") -> Any:
        """Log in through ``POST {prefix}/auth/login`` like a browser: the session cookie is
        kept, and the CSRF token is sent with every later request. Returns the user."""
        response = await self.post(
            f"{prefix}/auth/login", json={"email": email, "password": password}
        )
        response.raise_for_status()
        body = response.json()
        self.headers["X-CSRF-Token"] = body["csrf_token"]
        return body["user"]

    async def bearer(self, email: str, password: str, *, prefix: str = "/api/v1") -> str:
        """Get an access token through ``POST {prefix}/auth/token`` and send it from now on."""
        response = await self.post(
            f"{prefix}/auth/token", json={"email": email, "password": password}
        )
        response.raise_for_status()
        token = str(response.json()["access_token"])
        self.headers["Authorization"] = f"Bearer {token}"
        return token

    @contextmanager
    def acting_as(self, principal: Principal | None) -> Iterator[BastionClient]:
        """Send the requests in the block as ``principal`` (``None``: anonymous)."""
        previous = self._identity.principal
        self._identity.principal = principal
        try:
            yield self
        finally:
            self._identity.principal = previous


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def live_server(app: ASGIApp, *, timeout_s: float = 10.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free 127.0.0.1 port in a thread; yields the base URL."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        proxy_headers=False,
        server_header=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"bastion-live-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"live server did not start on port {port}")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout_s)
