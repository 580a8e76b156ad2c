"""The in-process query cache: LRU, per-entry TTL, single-flight, commit invalidation.

Correctness rules:

- A result is cached under its function, its arguments and its caller (the user id,
  or anonymous), so one user's private result is never served to another.
- Each entry remembers the tables its query read. A committed write to any of them
  drops it (:meth:`QueryCache.invalidate`, fed by ``Database.on_write``).
- A result computed while a commit touched its tables is not stored: the per-table
  versions taken before the query must still hold when it is stored.
- Concurrent misses of one key run the query once (single-flight).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import anyio
from pydantic import TypeAdapter
from pydantic_core import to_jsonable_python

_TTL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86_400, None: 1}


def parse_ttl(value: str | float | timedelta) -> float:
    """``"5m"``, ``"30s"``, ``90`` or a timedelta → seconds; ValueError otherwise."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _TTL.match(value)
        if match is None:
            raise ValueError(f"cache TTL {value!r} is not like '30s', '5m' or '1h'")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError("a cache TTL must be positive")
    return seconds


def cache_key(function: str, args: Mapping[str, Any], caller: str | None) -> str:
    """A stable key: the same function, arguments and caller give the same string."""
    canonical = json.dumps(to_jsonable_python(dict(args)), sort_keys=True, separators=(",", ":"))
    return f"{function}|{caller or 'anonymous'}|{canonical}"


@dataclass(slots=True)
class _Entry:
    value: Any
    tables: frozenset[str]
    expires: float


class QueryCache:
    """Results of cached queries in this process.

    Args:
        max_entries: Least recently used entries go first beyond this.
        clock: Monotonic seconds (tests pass their own).
    """

    shared = False

    def __init__(self, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._by_table: dict[str, set[str]] = {}
        self._versions: dict[str, int] = {}
        self._pending: dict[str, anyio.Event] = {}
        self.hits = 0
        self.misses = 0
        self.invalidations = 0
        # Invalidations arrive from whichever thread committed; lookups run on the loop.
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> tuple[bool, Any]:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return False, None
            if entry.expires <= self.clock():
                self._drop(key)
                return False, None
            self._entries.move_to_end(key)
            return True, entry.value

    async def get_or_compute(
        self,
        key: str,
        ttl_s: float,
        compute: Callable[[], Awaitable[tuple[Any, Iterable[str]]]],
        response: TypeAdapter[Any] | None = None,
    ) -> Any:
        """The cached value of ``key``, or ``compute()``'s (value, tables read), stored.

        ``response`` is unused: values stay Python objects in this process.
        """
        while True:
            found, value = self.get(key)
            if found:
                self.hits += 1
                return value
            pending = self._pending.get(key)
            if pending is None:
                break
            await pending.wait()  # another task is computing it: take its result
        self.misses += 1
        done = self._pending[key] = anyio.Event()
        with self._lock:
            versions = dict(self._versions)
        try:
            value, tables = await compute()
            read = frozenset(tables)
            with self._lock:
                if all(self._versions.get(t, 0) == versions.get(t, 0) for t in read):
                    self._store(key, _Entry(value, read, self.clock() + ttl_s))
            return value
        finally:
            del self._pending[key]
            done.set()

    def invalidate(self, tables: Iterable[str]) -> int:
        """Drop every entry that read one of ``tables``; returns how many."""
        dropped = 0
        with self._lock:
            for table in tables:
                self._versions[table] = self._versions.get(table, 0) + 1
                for key in list(self._by_table.get(table, ())):
                    self._drop(key)
                    dropped += 1
            self.invalidations += dropped
        return dropped

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._by_table.clear()

    def close(self) -> None:
        """Nothing to release: the entries go with the process."""

    def _store(self, key: str, entry: _Entry) -> None:
        if key in self._entries:
            self._drop(key)
        self._entries[key] = entry
        for table in entry.tables:
            self._by_table.setdefault(table, set()).add(key)
        while len(self._entries) > self.max_entries:
            oldest = next(iter(self._entries))
            self._drop(oldest)

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        for table in entry.tables:
            keys = self._by_table.get(table)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_table[table]
