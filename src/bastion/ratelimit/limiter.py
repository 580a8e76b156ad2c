"""Windowed rate limits through the ``limits`` library: memory for one process, Redis for many."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    RateLimiter,
    SlidingWindowCounterRateLimiter,
)

from bastion.settings.sections import RateLimitSection

_STRATEGIES: dict[str, type[RateLimiter]] = {
    "fixed-window": FixedWindowRateLimiter,
    "moving-window": MovingWindowRateLimiter,
    "sliding-window": SlidingWindowCounterRateLimiter,
}


class LimiterUnavailable(Exception):
    """The rate-limit storage could not be reached."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one check against the tightest applicable limit."""

    allowed: bool
    limit: int
    remaining: int
    reset_after_s: int
    """Seconds until the window frees capacity (``RateLimit-Reset``, ``Retry-After``)."""


def storage_for(url: str) -> tuple[Storage, Any]:
    """A ``limits`` async storage for ``memory://`` or ``redis://host:port/db``, and the
    redis-py connection pool behind it (``None`` for memory), which the caller closes.
    """
    if url.startswith("memory://"):
        return MemoryStorage(), None
    if url.startswith(("redis://", "rediss://")):
        import redis.asyncio as redis

        # Short timeouts: with Redis unreachable, a request must fail open (or closed)
        # at once, not wait for the operating system to give up on the connection.
        pool = redis.ConnectionPool.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        # limits types **options as scalars, but its redis-py bridge reads connection_pool.
        options: dict[str, Any] = {"connection_pool": pool}
        storage = RedisStorage(
            f"async+{url}", implementation="redispy", wrap_exceptions=True, **options
        )
        return storage, pool
    raise ValueError(f"unsupported rate-limit storage {url!r}: use memory:// or redis://")


def parse_limits(entries: Iterable[str]) -> tuple[RateLimitItem, ...]:
    """``["20/second", "600/minute"]`` as ``limits`` items.

    Raises:
        ValueError: an entry is not a limit.
    """
    return tuple(item for entry in entries for item in parse_many(entry))


def tightest(*decisions: Decision | None) -> Decision | None:
    """The decision a client must hear about: a refusal first, else the least remaining."""
    chosen: Decision | None = None
    for decision in decisions:
        if decision is not None and (chosen is None or _tighter(decision, chosen)):
            chosen = decision
    return chosen


class Limiter:
    """Checks keys against limits like ``"600/minute"``.

    Args:
        settings: The ``[ratelimit]`` section; its policies are parsed once, here.
    """

    def __init__(self, settings: RateLimitSection) -> None:
        self.settings = settings
        self.storage, self._pool = storage_for(settings.storage_url)
        self.strategy = _STRATEGIES[settings.strategy](self.storage)
        self.default_limits = parse_limits(settings.default_limits)
        self.user_limits = parse_limits(settings.user_limits)
        self.api_key_limits = parse_limits(settings.api_key_limits)
        self.global_limits = parse_limits(settings.global_limits)

    async def check(self, key: str, limits: Sequence[RateLimitItem]) -> Decision | None:
        """Count one hit of ``key`` against every limit; ``None`` when there are none.

        Raises:
            LimiterUnavailable: the storage failed (the caller applies fail-open/closed).
        """
        if not limits:
            return None
        chosen: Decision | None = None
        try:
            for item in limits:
                allowed = await self.strategy.hit(item, key)
                stats = await self.strategy.get_window_stats(item, key)
                reset = max(1, math.ceil(stats.reset_time - time.time()))
                decision = Decision(allowed, item.amount, max(0, stats.remaining), reset)
                chosen = tightest(chosen, decision)
        except Exception as exc:  # any storage failure is the same event for the caller
            raise LimiterUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return chosen

    async def exhausted(self, key: str, item: RateLimitItem) -> int | None:
        """Seconds until ``key`` may try again when ``item`` is used up, else ``None``.

        Counts nothing: with :meth:`hit` it lets callers count only failures (logins).
        """
        try:
            if await self.strategy.test(item, key):
                return None
            stats = await self.strategy.get_window_stats(item, key)
        except Exception as exc:
            raise LimiterUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def hit(self, key: str, item: RateLimitItem) -> None:
        """Count one event of ``key`` against ``item``."""
        try:
            await self.strategy.hit(item, key)
        except Exception as exc:
            raise LimiterUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def healthy(self) -> None:
        """Raise when the storage does not answer (a readiness check)."""
        if not await self.storage.check():
            raise LimiterUnavailable("rate-limit storage did not answer")

    async def reset(self) -> None:
        await self.storage.reset()

    async def close(self) -> None:
        """Close the storage's connections (runtime shutdown)."""
        if self._pool is not None:
            await self._pool.disconnect()


def _tighter(candidate: Decision, current: Decision) -> bool:
    if candidate.allowed != current.allowed:
        return not candidate.allowed
    return candidate.remaining < current.remaining
