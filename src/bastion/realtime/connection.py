"""One client connection, whatever carries it (WebSocket or server-sent events)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from bastion.auth.principal import Principal

#: Close codes sent to WebSocket clients (4000-4999 are the application's).
CLOSE_SLOW_CONSUMER = 4008
CLOSE_SIGNED_OUT = 4401
CLOSE_ORIGIN = 4403
CLOSE_GOING_AWAY = 1001

_ids = itertools.count(1)


@dataclass(eq=False, slots=True)
class QuerySubscription:
    """A query a connection follows: its last result and the tables that result read."""

    name: str
    function: str
    args: dict[str, Any]
    key: str
    """Function, arguments and caller: subscriptions with one key share each re-run."""
    last: str | None = None
    tables: frozenset[str] = frozenset()


@dataclass(eq=False)
class Connection:
    """A connected client: who it is, what it follows, what waits to be sent to it.

    The send queue is bounded: a client that does not read fast enough is disconnected
    rather than allowed to grow the server's memory.
    """

    user: Principal | None
    locale: str
    queue_size: int
    session_key: str | None = None
    token_expires_at: float | None = None
    id: int = field(default_factory=lambda: next(_ids))
    channels: set[str] = field(default_factory=set)
    queries: dict[tuple[str, str], QuerySubscription] = field(default_factory=dict)
    close_code: int | None = None
    close_reason: str = ""

    def __post_init__(self) -> None:
        self.outbox: asyncio.Queue[str] = asyncio.Queue(self.queue_size)
        self.closed = asyncio.Event()
        self.loop = asyncio.get_running_loop()

    @property
    def user_id(self) -> str | None:
        return self.user.id if self.user is not None else None

    @property
    def subscription_count(self) -> int:
        return len(self.channels) + len(self.queries)

    def push(self, message: dict[str, Any]) -> None:
        """Queue ``message`` for the client; a full queue disconnects it (slow consumer)."""
        self.push_text(encode(message))

    def push_text(self, text: str) -> None:
        """Queue an encoded message (one encoding serves every subscriber of a fan-out)."""
        if self.closed.is_set():
            return
        try:
            self.outbox.put_nowait(text)
        except asyncio.QueueFull:
            self.close(CLOSE_SLOW_CONSUMER, "slow_consumer")

    def close(self, code: int, reason: str, *, error: dict[str, Any] | None = None) -> None:
        """End the connection; ``error`` is sent first when there is room for it."""
        if self.closed.is_set():
            return
        if error is not None:
            with contextlib.suppress(asyncio.QueueFull):
                self.outbox.put_nowait(encode(error))
        self.close_code, self.close_reason = code, reason
        self.closed.set()

    def expired(self) -> bool:
        return self.token_expires_at is not None and time.time() >= self.token_expires_at


def encode(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), default=str)
