"""A circuit breaker per dependency: closed, open, half-open; in memory or shared through Redis.

* **closed** — calls go through; ``failure_threshold`` consecutive failures open it.
* **open** — calls are refused without reaching the peer, for ``reset_timeout_s``.
* **half-open** — the first caller after the timeout makes one trial call; the others
  are still refused. Success closes the breaker, failure opens it for another period.
  A trial whose outcome never arrives (its process died) is replaced by a new trial
  after another ``reset_timeout_s``.

Why not pybreaker or purgatory: docs/decisions/0005-circuit-breaker.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from bastion.observability.logs import get_logger
from bastion.observability.metrics import Metrics

BreakerState = Literal["closed", "open", "half_open"]

#: Redis keys are ``bastion:breaker:<dependency>``.
KEY_PREFIX = "bastion:breaker:"

#: A breaker untouched this long is forgotten (Redis); it would be closed again anyway.
_KEY_TTL_S = 86_400


class BreakerUnavailable(Exception):
    """The breaker's storage could not be reached."""


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """A breaker's stored state, for health pages and tests."""

    state: BreakerState
    failures: int
    opened_at: float | None


class BreakerStorage(Protocol):
    """Where breakers keep their state. Every method is one atomic step.

    ``acquire`` answers ``None`` when a call may go ahead, else the seconds until the
    breaker lets a trial call through.
    """

    async def acquire(self, name: str, now: float, reset_timeout_s: float) -> float | None: ...

    async def record_success(self, name: str) -> None: ...

    async def record_failure(self, name: str, now: float, threshold: int) -> None: ...

    async def snapshot(self, name: str) -> BreakerSnapshot: ...

    async def names(self) -> list[str]: ...

    async def close(self) -> None: ...


@dataclass
class _Entry:
    state: BreakerState = "closed"
    failures: int = 0
    opened_at: float = 0.0


class MemoryBreakerStorage:
    """Breakers of one process. No ``await`` inside a step, so each step is atomic."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    async def acquire(self, name: str, now: float, reset_timeout_s: float) -> float | None:
        entry = self._entries.get(name)
        if entry is None or entry.state == "closed":
            return None
        waited = now - entry.opened_at
        if waited >= reset_timeout_s:
            # Open long enough, or a half-open trial that never reported: one new trial.
            entry.state, entry.opened_at = "half_open", now
            return None
        return reset_timeout_s - waited

    async def record_success(self, name: str) -> None:
        self._entries.pop(name, None)

    async def record_failure(self, name: str, now: float, threshold: int) -> None:
        entry = self._entries.setdefault(name, _Entry())
        entry.failures += 1
        if entry.state == "half_open" or (entry.state == "closed" and entry.failures >= threshold):
            entry.state, entry.opened_at = "open", now

    async def snapshot(self, name: str) -> BreakerSnapshot:
        entry = self._entries.get(name, _Entry())
        opened_at = entry.opened_at if entry.state != "closed" else None
        return BreakerSnapshot(entry.state, entry.failures, opened_at)

    async def names(self) -> list[str]:
        return list(self._entries)

    async def close(self) -> None:
        self._entries.clear()


# One hash per dependency: state, failures, opened_at. Scripts run atomically in Redis,
# so processes never interleave a read and a write of the same breaker.
_ACQUIRE = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state or state == 'closed' then return '' end
local now = tonumber(ARGV[1])
local reset = tonumber(ARGV[2])
local waited = now - tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0')
if waited >= reset then
  redis.call('HSET', KEYS[1], 'state', 'half_open', 'opened_at', ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return ''
end
return tostring(reset - waited)
"""

_FAILURE = """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if state == 'half_open' or (state == 'closed' and failures >= tonumber(ARGV[2])) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', ARGV[1])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return failures
"""


class RedisBreakerStorage:
    """Breakers shared by every process that uses the same Redis and prefix.

    Times come from the callers' clocks, so the processes' clocks should agree
    (NTP); a skew only shifts when a trial call is let through.
    """

    def __init__(self, url: str, *, prefix: str = KEY_PREFIX) -> None:
        import redis.asyncio as redis

        # Short timeouts: with Redis unreachable, the caller fails open at once.
        self._pool = redis.ConnectionPool.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        self._redis = redis.Redis(connection_pool=self._pool, decode_responses=False)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._failure = self._redis.register_script(_FAILURE)
        self.prefix = prefix

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    async def acquire(self, name: str, now: float, reset_timeout_s: float) -> float | None:
        result = await self._call(
            self._acquire, [self.key(name)], [repr(now), repr(reset_timeout_s), _KEY_TTL_S]
        )
        text = result.decode() if isinstance(result, bytes) else str(result or "")
        return float(text) if text else None

    async def record_success(self, name: str) -> None:
        try:
            await self._redis.delete(self.key(name))
        except Exception as exc:
            raise BreakerUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def record_failure(self, name: str, now: float, threshold: int) -> None:
        await self._call(self._failure, [self.key(name)], [repr(now), threshold, _KEY_TTL_S])

    async def snapshot(self, name: str) -> BreakerSnapshot:
        try:
            raw = await self._redis.hgetall(self.key(name))
        except Exception as exc:
            raise BreakerUnavailable(f"{type(exc).__name__}: {exc}") from exc
        fields = {_text(k): _text(v) for k, v in raw.items()}
        state: BreakerState = fields.get("state", "closed")  # type: ignore[assignment]
        opened = fields.get("opened_at")
        return BreakerSnapshot(
            state, int(fields.get("failures", 0)), float(opened) if opened else None
        )

    async def names(self) -> list[str]:
        try:
            keys = [key async for key in self._redis.scan_iter(match=f"{self.prefix}*")]
        except Exception as exc:
            raise BreakerUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return sorted(_text(key)[len(self.prefix) :] for key in keys)

    async def close(self) -> None:
        await self._redis.aclose()
        await self._pool.disconnect()

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except Exception as exc:  # any storage failure is the same event for the caller
            raise BreakerUnavailable(f"{type(exc).__name__}: {exc}") from exc


class CircuitBreaker:
    """Breakers for every dependency, named by the caller, over one storage.

    When the storage fails (Redis down), the breaker **fails open**: calls go through
    and a warning is logged. Refusing every outbound call because the breaker's own
    bookkeeping is unreachable would turn a Redis outage into an outage of every
    dependency; the retry policy and time limits still bound the calls.
    """

    def __init__(
        self,
        storage: BreakerStorage,
        *,
        failure_threshold: int = 5,
        reset_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
    ) -> None:
        self.storage = storage
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self.clock = clock
        self.log = get_logger("bastion.integrations")
        self.metrics = metrics
        #: The state of each breaker as this process last saw it (for metrics).
        self._seen: dict[str, BreakerState] = {}

    async def allow(self, name: str) -> float | None:
        """``None`` when a call to ``name`` may go ahead, else seconds until a trial is allowed."""
        try:
            wait = await self.storage.acquire(name, self.clock(), self.reset_timeout_s)
        except BreakerUnavailable as exc:
            self.log.warning("breaker_unavailable", dependency=name, error=str(exc))
            return None
        if wait is not None:
            self.log.info("breaker_refused", dependency=name, retry_after_s=round(wait, 3))
            self._saw(name, "open")
        elif self.metrics is not None and self._seen.get(name, "closed") != "closed":
            # Let through after being open: a trial (half-open), or closed meanwhile by
            # another process. Asked once per open period, so the cost stays off the
            # common path.
            await self._look(name)
        return wait

    async def success(self, name: str) -> None:
        try:
            await self.storage.record_success(name)
        except BreakerUnavailable as exc:
            self.log.warning("breaker_unavailable", dependency=name, error=str(exc))
            return
        self._saw(name, "closed")

    async def failure(self, name: str) -> None:
        try:
            await self.storage.record_failure(name, self.clock(), self.failure_threshold)
        except BreakerUnavailable as exc:
            self.log.warning("breaker_unavailable", dependency=name, error=str(exc))
            return
        if self.metrics is not None:
            await self._look(name)

    async def _look(self, name: str) -> None:
        try:
            snapshot = await self.storage.snapshot(name)
        except BreakerUnavailable:
            return  # the next call tells; metrics are not worth a warning of their own
        self._saw(name, snapshot.state)

    def _saw(self, name: str, state: BreakerState) -> None:
        if self.metrics is None or self._seen.get(name, "closed") == state:
            return
        self._seen[name] = state
        self.metrics.breaker_changed(name, state)

    async def snapshot(self, name: str) -> BreakerSnapshot:
        return await self.storage.snapshot(name)

    async def snapshots(self) -> dict[str, BreakerSnapshot]:
        """Every breaker the storage remembers (one closed by a success is forgotten).

        Raises:
            BreakerUnavailable: the storage could not be reached.
        """
        return {name: await self.storage.snapshot(name) for name in await self.storage.names()}

    async def close(self) -> None:
        await self.storage.close()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
