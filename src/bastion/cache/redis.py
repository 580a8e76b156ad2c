"""The query cache in Redis, shared by every process of an app (``[cache] backend = "redis"``).

Design: a version counter per table, checked on every read.

- ``<namespace>versions`` is a hash, table → version. :meth:`RedisQueryCache.invalidate`
  adds one to the version of each table a commit wrote (``HINCRBY``, one round trip),
  synchronously in the committing thread. It deletes nothing: once it returns, every
  entry that read one of those tables is a miss, in every process.
- An entry, ``<namespace>q:<digest of the key>``, is one string stored with
  ``SET ... PX ttl``: a JSON header of the versions of the tables its query read, taken
  *before* the query ran, a newline, then the result as JSON.
- A read is one Lua script: the value is returned only if every version in its header
  is still current; otherwise it is a miss and the stale entry expires with its TTL.
- A store is one Lua script that writes only if those versions are still current, so a
  result computed across a commit, in any process, is not stored. Even if it were, its
  header would make it a miss: correctness rests on that single comparison.

Per-table sets of keys were the alternative: the commit path would pay for deleting every
entry, the sets would need expiry and cleaning of their own, and a store racing an
invalidation would still need a version check.

Values come back from JSON and are validated as the function's response type, so a hit
returns what the query itself returns (values typed ``Any`` come back as JSON types).

Failures never fail a request. A read or store that fails is counted (``errors``),
logged as a warning, and this process runs cached queries uncached for
``redis_retry_s``. An invalidation that fails is logged as an error and kept: this
process reads nothing from Redis until the bump has been sent, retried after each
``redis_retry_s``. The risk that remains: until that retry succeeds (or, if the process
dies first, until the entries' TTL), *other* processes that still reach Redis may serve
results older than that commit. Redis must not evict the versions hash (use
``noeviction`` or a ``volatile-*`` policy: the hash has no TTL), and must be one
instance, not a cluster (scripts touch an entry and the hash together).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import structlog
from pydantic import TypeAdapter
from pydantic_core import to_json

if TYPE_CHECKING:
    import redis

# Returns {1, value} when the entry exists and every version in its header is current,
# else {0, versions as a flat list}: the snapshot a store after the query must match.
_READ = r"""
local raw = redis.call('GET', KEYS[1])
if raw then
  local cut = string.find(raw, '\n', 1, true)
  local current = cut ~= nil
  if current then
    for name, version in pairs(cjson.decode(string.sub(raw, 1, cut - 1))) do
      if tonumber(redis.call('HGET', KEYS[2], name) or '0') ~= version then
        current = false
        break
      end
    end
  end
  if current then
    return {1, string.sub(raw, cut + 1)}
  end
end
return {0, redis.call('HGETALL', KEYS[2])}
"""

_STORE = r"""
for name, version in pairs(cjson.decode(ARGV[2])) do
  if tonumber(redis.call('HGET', KEYS[2], name) or '0') ~= version then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[2] .. '\n' .. ARGV[3], 'PX', ARGV[1])
return 1
"""

_GLOB = re.compile(r"([*?\[\]\\])")


class RedisQueryCache:
    """Results of cached queries in Redis, for every process using ``namespace``.

    Args:
        url: ``redis://host:port/db``.
        namespace: Start of every key (``[cache] prefix`` and the app's name).
        timeout_s: Time limit for connecting and for one command.
        retry_s: How long to run uncached after a failure before trying Redis again.
        clock: Monotonic seconds (tests pass their own).
    """

    shared = True

    def __init__(
        self,
        url: str,
        *,
        namespace: str,
        timeout_s: float = 0.25,
        retry_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # Sync on purpose: invalidate() runs in the committing thread, and a client with
        # no event loop of its own serves every thread and loop. No retries: a slow or
        # absent Redis must cost a request one timeout at most.
        self._redis: redis.Redis = redis.Redis.from_url(
            url,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        self._read = self._redis.register_script(_READ)
        self._store = self._redis.register_script(_STORE)
        self.namespace = namespace
        self._versions = f"{namespace}versions"
        self._entries = f"{namespace}q:"
        self.retry_s = retry_s
        self.clock = clock
        self.hits = 0
        self.misses = 0
        self.invalidations = 0
        #: Redis commands that failed (each made this process skip Redis for ``retry_s``).
        self.errors = 0
        self._pending: dict[str, anyio.Event] = {}
        # Tables whose bump Redis has not taken yet, each with the failure that left it.
        self._unsent: dict[str, int] = {}
        self._failures = 0
        self._skip_until = float("-inf")
        # invalidate() arrives from committing threads; lookups from worker threads.
        self._lock = threading.Lock()
        self._log = structlog.get_logger("bastion.cache")

    async def get_or_compute(
        self,
        key: str,
        ttl_s: float,
        compute: Callable[[], Awaitable[tuple[Any, Iterable[str]]]],
        response: TypeAdapter[Any] | None = None,
    ) -> Any:
        """The cached value of ``key``, or ``compute()``'s (value, tables read), stored.

        Single-flight is per process: concurrent misses of one key here run it once.
        """
        entry = self._entries + hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
        while True:
            if self._skipping():
                return await self._compute_uncached(compute)
            try:
                found, got = await anyio.to_thread.run_sync(self._lookup, entry, response)
            except Exception as error:  # whatever breaks in the cache, the request must not
                self._failed("read", error)
                return await self._compute_uncached(compute)
            if found:
                self.hits += 1
                return got
            pending = self._pending.get(entry)
            if pending is None:
                break
            await pending.wait()  # another task is computing it: read its result
        self.misses += 1
        done = self._pending[entry] = anyio.Event()
        try:
            value, tables = await compute()
            try:
                await anyio.to_thread.run_sync(
                    self._put, entry, ttl_s, got, frozenset(tables), value, response
                )
            except Exception as error:
                self._failed("store", error)
            return value
        finally:
            del self._pending[entry]
            done.set()

    def invalidate(self, tables: Iterable[str]) -> int:
        """Bump the version of each of ``tables``; returns how many were bumped.

        Never raises: a failure is logged, and the bump is sent again before this
        process reads from Redis again.
        """
        names = sorted(set(tables))
        if not names:
            return 0
        if not self._skipping():
            try:
                self._bump(names)
            except Exception as error:
                self._remember_unsent(names)
                self._failed("invalidate", error)
                return 0
            with self._lock:
                self.invalidations += len(names)
            return len(names)
        self._remember_unsent(names)
        return 0

    def clear(self) -> None:
        """Delete every entry of this namespace (the versions stay)."""
        pattern = _GLOB.sub(r"\\\1", self._entries) + "*"
        batch: list[bytes] = []
        for name in self._redis.scan_iter(match=pattern, count=500):
            batch.append(name)
            if len(batch) == 500:
                self._redis.unlink(*batch)
                batch.clear()
        if batch:
            self._redis.unlink(*batch)

    def close(self) -> None:
        self._redis.close()

    async def _compute_uncached(
        self, compute: Callable[[], Awaitable[tuple[Any, Iterable[str]]]]
    ) -> Any:
        self.misses += 1
        value, _tables = await compute()
        return value

    def _lookup(self, entry: str, response: TypeAdapter[Any] | None) -> tuple[bool, Any]:
        self._send_unsent()
        found, payload = self._read(keys=[entry, self._versions])
        if found:
            try:
                return True, response.validate_json(payload) if response else json.loads(payload)
            except ValueError as error:  # pydantic.ValidationError is one too
                # Stored by a version of the app whose response type differed: a miss.
                self._log.warning("cache_entry_unreadable", error=str(error))
                return False, _versions(self._redis.hgetall(self._versions).items())
        pairs = iter(payload)
        return False, _versions(zip(pairs, pairs, strict=True))

    def _put(
        self,
        entry: str,
        ttl_s: float,
        versions: dict[str, int],
        tables: frozenset[str],
        value: Any,
        response: TypeAdapter[Any] | None,
    ) -> None:
        header = json.dumps({t: versions.get(t, 0) for t in sorted(tables)}, separators=(",", ":"))
        body = response.dump_json(value, by_alias=True) if response else to_json(value)
        ttl_ms = max(1, round(ttl_s * 1000))
        self._store(keys=[entry, self._versions], args=[ttl_ms, header, body])

    def _bump(self, tables: Iterable[str]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for table in tables:
            pipe.hincrby(self._versions, table, 1)
        pipe.execute()

    def _send_unsent(self) -> None:
        with self._lock:
            unsent = dict(self._unsent)
        if not unsent:
            return
        self._bump(unsent)
        with self._lock:
            for table, failure in unsent.items():
                # A newer failure for the table may have come in meanwhile: keep it.
                if self._unsent.get(table) == failure:
                    del self._unsent[table]
            self.invalidations += len(unsent)
        self._log.info("cache_invalidation_sent", tables=sorted(unsent))

    def _remember_unsent(self, tables: list[str]) -> None:
        with self._lock:
            self._failures += 1
            for table in tables:
                self._unsent[table] = self._failures

    def _skipping(self) -> bool:
        with self._lock:
            return self.clock() < self._skip_until

    def _failed(self, operation: str, error: Exception) -> None:
        with self._lock:
            self.errors += 1
            self._skip_until = self.clock() + self.retry_s
        event = dict(
            operation=operation, error=f"{type(error).__name__}: {error}", retry_in_s=self.retry_s
        )
        if operation == "invalidate":
            self._log.error("cache_invalidation_failed", **event)
        else:
            self._log.warning("cache_unavailable", **event)


def _versions(pairs: Iterable[tuple[Any, Any]]) -> dict[str, int]:
    return {bytes(name).decode(): int(version) for name, version in pairs}
