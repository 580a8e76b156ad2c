"""The bus: small JSON messages from any process of an app to all of them.

What travels on it: the tables each commit wrote (so every process drops stale cached
results and re-runs realtime subscriptions), realtime events for connected clients, and
sign-outs that must close connections held by other processes.

Delivery is at most once and best effort, as Redis pub/sub and PostgreSQL NOTIFY are:
a process that loses its subscription may miss messages, so losing it and getting it
back both call the *gap* listeners, which throw away what might be stale (the cache
clears itself, realtime subscriptions re-run): staleness is bounded by the outage.

A message reaches its own process too, through the backend, so one path serves local
and remote subscribers; ``Message.origin`` tells them apart.

``publish`` is safe from any thread (commits happen on worker threads) and never blocks:
the message is handed to the event loop, which sends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

#: PostgreSQL refuses NOTIFY payloads of 8,000 bytes or more.
PG_PAYLOAD_LIMIT = 7_999
_SEND_BACKLOG = 10_000
#: How long closing waits for the subscription and sender tasks to finish cancelling.
_CLOSE_WAIT_S = 2.0


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    data: dict[str, Any]
    origin: str
    """The id of the publishing process's bus (``Bus.origin``)."""


Handler = Callable[[Message], None]


class MessageTooLarge(ValueError):
    """The backend cannot carry a message this large."""


class Bus:
    """Local dispatch and the thread-safe hand-off; backends add the transport.

    Args:
        channel: Where this app's processes meet (a Redis channel, a NOTIFY channel).
        reconnect_max_s: Longest wait between reconnection attempts.
    """

    backend = "memory"
    max_payload: int | None = None

    def __init__(self, channel: str, *, reconnect_max_s: float = 5.0) -> None:
        self.channel = channel
        self.reconnect_max_s = reconnect_max_s
        self.origin = uuid.uuid4().hex[:12]
        self.connected = False
        self.log = structlog.get_logger("bastion.pubsub").bind(backend=self.backend)
        self._handlers: dict[str, list[Handler]] = {}
        self._gap_listeners: list[Callable[[], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # -- subscribers ----------------------------------------------------------------

    def subscribe(self, topic: str, handler: Handler) -> Callable[[], None]:
        """Call ``handler(message)`` on the event loop for each message on ``topic``;
        returns a function that removes it."""
        self._handlers.setdefault(topic, []).append(handler)
        return lambda: self._handlers[topic].remove(handler)

    def on_gap(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` whenever messages may have been missed (a reconnect)."""
        self._gap_listeners.append(listener)

    # -- publishers -----------------------------------------------------------------

    def encode(self, topic: str, data: dict[str, Any]) -> str:
        """The wire form of a message; raises MessageTooLarge past the backend's limit."""
        payload = json.dumps({"o": self.origin, "t": topic, "d": data}, separators=(",", ":"))
        if self.max_payload is not None and len(payload.encode()) > self.max_payload:
            raise MessageTooLarge(
                f"a {self.backend} bus message holds at most {self.max_payload} bytes"
            )
        return payload

    def publish(self, topic: str, data: dict[str, Any]) -> None:
        """Send a message to every process of the app, this one included.

        Before :meth:`start` (a CLI command, a script) there is nobody to tell in this
        process and no loop to send from: the message is dropped, with a debug line.
        """
        self.send_encoded(self.encode(topic, data))

    def send_encoded(self, payload: str) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            self.log.debug("bus_not_started", payload=payload[:200])
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            # Later on the loop, not now: the publisher (a request) does not wait for a
            # fan-out to every local subscriber, and FIFO keeps the order.
            loop.call_soon(self._send, payload)
        else:
            loop.call_soon_threadsafe(self._send, payload)

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.connected = True

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # Bounded: a client library caught mid-command by the cancellation (a
            # publish of a commit made just before shutdown) must not hang shutdown.
            _done, pending = await asyncio.wait(self._tasks, timeout=_CLOSE_WAIT_S)
            if pending:
                self.log.warning("bus_close_abandoned", tasks=len(pending))
        self._tasks.clear()
        self.connected = False
        self._loop = None

    async def healthy(self) -> None:
        """Raise when the subscription is down (a health check)."""
        if not self.connected:
            raise ConnectionError(f"{self.backend} bus is not connected")

    # -- internals ------------------------------------------------------------------

    def _send(self, payload: str) -> None:
        """Transport ``payload`` (runs on the loop)."""
        self._dispatch(payload)

    def _dispatch(self, payload: str | bytes) -> None:
        try:
            raw = json.loads(payload)
            message = Message(topic=raw["t"], data=raw["d"], origin=raw["o"])
        except (ValueError, KeyError, TypeError):
            self.log.warning("bus_message_malformed", payload=str(payload)[:200])
            return
        for handler in list(self._handlers.get(message.topic, ())):
            try:
                handler(message)
            except Exception:
                self.log.exception("bus_handler_failed", topic=message.topic)

    def _gap(self) -> None:
        for listener in list(self._gap_listeners):
            try:
                listener()
            except Exception:
                self.log.exception("bus_gap_listener_failed")

    def _spawn(self, coroutine: Any) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(coroutine))


class _RemoteBus(Bus):
    """A bus over a server: one subscription that reconnects, one ordered sender."""

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._outbox: asyncio.Queue[str] = asyncio.Queue(_SEND_BACKLOG)
        ready = asyncio.Event()
        self._spawn(self._listen_forever(ready))
        self._spawn(self._send_forever())
        # Wait for the subscription so that a freshly started server hears the next
        # commit; if the server is down the app starts anyway and health reports it.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready.wait(), timeout=5)

    def _send(self, payload: str) -> None:
        try:
            self._outbox.put_nowait(payload)
        except asyncio.QueueFull:
            self.log.error("bus_backlog_full", dropped=payload[:200])

    async def _listen_forever(self, ready: asyncio.Event) -> None:
        delay = 0.05
        subscribed_before = False
        while True:
            try:
                async for payload in self._subscription(ready):
                    if not self.connected:
                        self.connected = True
                        delay = 0.05
                        if subscribed_before:
                            self._gap()
                        subscribed_before = True
                    if payload is not None:
                        self._dispatch(payload)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if self.connected or not ready.is_set():
                    self.log.warning("bus_disconnected", error=f"{type(error).__name__}: {error}")
                if self.connected:
                    self._gap()
                self.connected = False
                subscribed_before = True
                ready.set()  # start() need not wait for a server that is down
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.reconnect_max_s)

    async def _send_forever(self) -> None:
        while True:
            payload = await self._outbox.get()
            for attempt in range(5):
                try:
                    await self._transmit(payload)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    if attempt == 4:
                        # Other processes miss this message: their caches may serve
                        # results older than this commit until the entries' TTL.
                        self.log.error(
                            "bus_publish_failed",
                            error=f"{type(error).__name__}: {error}",
                            payload=payload[:200],
                        )
                    else:
                        await asyncio.sleep(0.05 * 2**attempt)

    def _subscription(self, ready: asyncio.Event) -> Any:
        """An async iterator of payloads; yields ``None`` once subscribed."""
        raise NotImplementedError

    async def _transmit(self, payload: str) -> None:
        raise NotImplementedError


class RedisBus(_RemoteBus):
    """Redis pub/sub (``[redis] url``)."""

    backend = "redis"

    def __init__(self, url: str, channel: str, *, reconnect_max_s: float = 5.0) -> None:
        super().__init__(channel, reconnect_max_s=reconnect_max_s)
        import redis.asyncio as redis

        self._client = redis.Redis.from_url(url, socket_connect_timeout=2)

    async def _subscription(self, ready: asyncio.Event) -> Any:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self.channel)
            yield None
            ready.set()
            while True:
                # A timeout instead of listen(): a dead connection surfaces as an error.
                message = await pubsub.get_message(timeout=30)
                if message is not None and message.get("type") == "message":
                    yield message["data"]
                elif message is None:
                    await pubsub.ping()
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _transmit(self, payload: str) -> None:
        await self._client.publish(self.channel, payload)

    async def aclose(self) -> None:
        await super().aclose()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._client.aclose(), timeout=_CLOSE_WAIT_S)


class PostgresBus(_RemoteBus):
    """PostgreSQL LISTEN/NOTIFY on the app's own database."""

    backend = "postgres"
    max_payload = PG_PAYLOAD_LIMIT

    def __init__(self, url: str, channel: str, *, reconnect_max_s: float = 5.0) -> None:
        super().__init__(channel, reconnect_max_s=reconnect_max_s)
        self._url = url
        self._sender: Any = None

    async def _subscription(self, ready: asyncio.Event) -> Any:
        import psycopg
        from psycopg import sql

        connection = await psycopg.AsyncConnection.connect(
            self._url, autocommit=True, connect_timeout=2
        )
        try:
            await connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
            yield None
            ready.set()
            while True:
                # notifies() ends after the timeout; the next lap re-checks the connection.
                async for notice in connection.notifies(timeout=30):
                    yield notice.payload
                await connection.execute("SELECT 1")
        finally:
            with contextlib.suppress(Exception):
                await connection.close()

    async def _transmit(self, payload: str) -> None:
        import psycopg

        if self._sender is None or self._sender.closed:
            self._sender = await psycopg.AsyncConnection.connect(
                self._url, autocommit=True, connect_timeout=2
            )
        try:
            await self._sender.execute("SELECT pg_notify(%s, %s)", (self.channel, payload))
        except Exception:
            with contextlib.suppress(Exception):
                await self._sender.close()
            self._sender = None
            raise

    async def aclose(self) -> None:
        await super().aclose()
        if self._sender is not None:
            with contextlib.suppress(Exception):
                await self._sender.close()
            self._sender = None
