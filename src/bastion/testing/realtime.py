"""A realtime client for tests: a real WebSocket to a served app (``live_url``).

Example::

    async with RealtimeClient.connect(live_url, token=token) as ws:
        await ws.subscribe(channel="cart")
        ... change the cart over HTTP ...
        event = await ws.next(event="cart_updated")
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin


class RealtimeClient:
    """One WebSocket connection; messages that don't match a wait are kept for later."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self._kept: list[dict[str, Any]] = []

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        base_url: str,
        *,
        token: str | None = None,
        cookies: dict[str, str] | None = None,
        origin: str | None = None,
        path: str = "/api/v1/realtime",
    ) -> AsyncIterator[RealtimeClient]:
        headers: dict[str, str] = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in cookies.items())
        url = base_url.replace("http://", "ws://").replace("https://", "wss://") + path
        async with connect(
            url,
            additional_headers=headers,
            origin=Origin(origin) if origin is not None else None,
            open_timeout=5,
        ) as socket:
            yield cls(socket)

    async def send(self, message: dict[str, Any]) -> None:
        await self.socket.send(json.dumps(message))

    async def subscribe(
        self,
        channel: str | None = None,
        *,
        query: str | None = None,
        args: dict[str, Any] | None = None,
        within: float = 5.0,
    ) -> dict[str, Any]:
        """Subscribe; returns the answer (``subscribed``, the first ``result``, or ``error``)."""
        if channel is not None:
            await self.send({"type": "subscribe", "channel": channel})
        else:
            await self.send({"type": "subscribe", "query": query, "args": args or {}})
        return await self.next(
            lambda m: (
                m["type"] in ("subscribed", "result", "error")
                and (
                    m.get("channel") == channel if channel is not None else m.get("query") == query
                )
            ),
            within=within,
        )

    async def next(
        self,
        match: Any = None,
        *,
        type: str | None = None,
        event: str | None = None,
        within: float = 5.0,
    ) -> dict[str, Any]:
        """The next message matching ``match(message)``, ``type`` and ``event``; pings are
        skipped. Raises TimeoutError when none arrives within ``within`` seconds."""

        def wanted(message: dict[str, Any]) -> bool:
            return (
                (type is None or message.get("type") == type)
                and (event is None or message.get("event") == event)
                and (match is None or bool(match(message)))
            )

        for index, message in enumerate(self._kept):
            if wanted(message):
                return self._kept.pop(index)
        async with asyncio.timeout(within):
            while True:
                message = json.loads(await self.socket.recv())
                if message.get("type") == "ping" and type != "ping":
                    continue
                if wanted(message):
                    return dict(message)
                self._kept.append(message)

    async def silent(self, within: float = 0.3) -> list[dict[str, Any]]:
        """Every message (pings aside) that arrives within ``within`` seconds."""
        received = [m for m in self._kept if m.get("type") != "ping"]
        self._kept.clear()
        try:
            async with asyncio.timeout(within):
                while True:
                    message = json.loads(await self.socket.recv())
                    if message.get("type") != "ping":
                        received.append(message)
        except TimeoutError:
            return received

    async def closed(self, within: float = 5.0) -> tuple[int | None, str]:
        """Wait for the server to close the connection; returns its close code and reason."""
        async with asyncio.timeout(within):
            try:
                while True:
                    self._kept.append(json.loads(await self.socket.recv()))
            except ConnectionClosed as closed:
                received = closed.rcvd
                return (received.code, received.reason) if received else (None, "")
