"""What the Invoker and the Runtime need from a query cache, whatever keeps the entries."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from pydantic import TypeAdapter

#: Runs the query: returns its validated result and the tables it read.
Compute = Callable[[], Awaitable[tuple[Any, Iterable[str]]]]


class QueryCacheBackend(Protocol):
    """Results of cached queries, dropped when a commit writes a table they read.

    Implemented by :class:`~bastion.cache.memory.QueryCache` (one process) and
    :class:`~bastion.cache.redis.RedisQueryCache` (every process of an app).
    """

    #: Whether every process of the app reads the same entries: then each process's
    #: commits invalidate them for all, and remote write messages need not.
    shared: bool
    hits: int
    misses: int
    invalidations: int

    async def get_or_compute(
        self,
        key: str,
        ttl_s: float,
        compute: Compute,
        response: TypeAdapter[Any] | None = None,
    ) -> Any:
        """The cached value of ``key``, or ``compute()``'s, stored for ``ttl_s`` seconds.

        Args:
            response: The function's response type; a backend that keeps values
                outside the process serializes them as it and validates them back, so
                a hit returns the same type as the query itself.
        """
        ...

    def invalidate(self, tables: Iterable[str]) -> int:
        """Make every entry that read one of ``tables`` a miss; callable from any thread."""
        ...

    def clear(self) -> None:
        """Drop every entry."""
        ...

    def close(self) -> None:
        """Release connections (at shutdown)."""
        ...
