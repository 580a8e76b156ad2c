"""Read replicas: which one a query reads from, and which cannot be reached.

Queries read from the replicas of ``[database] replica_urls`` in turn. A replica that
cannot be reached is skipped for :data:`RETRY_AFTER_S` while its share of queries runs
on the primary; that is logged once per period, not once per request. Its health
check (``database_replica_<index>``) keeps trying it and brings it back as soon as it
answers.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import structlog
from sqlalchemy import Connection, Engine, exc, text

from bastion.db.engine import create_replica_engine
from bastion.settings.sections import DatabaseSection

#: Seconds an unreachable replica is left out before a query tries it again.
RETRY_AFTER_S = 30.0


@dataclass(slots=True)
class Replica:
    """One read replica and until when it is left out."""

    name: str
    engine: Engine
    down_until: float = 0.0


class ReplicaSet:
    """The replicas of one database (none without ``replica_urls``).

    Args:
        settings: The ``[database]`` section.
        clock: Monotonic seconds; tests may pass their own.
    """

    def __init__(
        self, settings: DatabaseSection, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.replicas = tuple(
            Replica(f"database_replica_{index}", create_replica_engine(url, settings))
            for index, url in enumerate(settings.replica_urls)
        )
        self._clock = clock
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._log = structlog.get_logger("bastion.db")

    def __iter__(self) -> Iterator[Replica]:
        return iter(self.replicas)

    def __bool__(self) -> bool:
        return bool(self.replicas)

    def connect(self) -> tuple[Replica, Connection] | None:
        """A connection to the next replica that answers; ``None`` means use the primary."""
        for replica in self._in_turn():
            try:
                return replica, replica.engine.connect()
            except exc.DBAPIError as error:
                # Nothing ran yet, so any failure here is the replica's, not the query's.
                self.mark_down(replica, error)
        return None

    def mark_down(self, replica: Replica, error: Exception) -> None:
        """Leave ``replica`` out for :data:`RETRY_AFTER_S`, logging it once for that period."""
        now = self._clock()
        with self._lock:
            already_down = replica.down_until > now
            replica.down_until = now + RETRY_AFTER_S
        if not already_down:
            self._log.warning(
                "replica_unavailable",
                replica=replica.name,
                retry_in_s=RETRY_AFTER_S,
                error=f"{type(error).__name__}: {getattr(error, 'orig', error)}"[:300],
            )

    def ping(self, replica: Replica) -> None:
        """Run ``SELECT 1`` on ``replica``; raises (and leaves it out) when it cannot answer."""
        try:
            with replica.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except exc.DBAPIError as error:
            self.mark_down(replica, error)
            raise
        with self._lock:
            replica.down_until = 0.0

    def dispose(self) -> None:
        for replica in self.replicas:
            replica.engine.dispose()

    def _in_turn(self) -> Iterator[Replica]:
        if not self.replicas:
            return
        now = self._clock()
        start = next(self._turn) % len(self.replicas)
        for replica in self.replicas[start:] + self.replicas[:start]:
            if replica.down_until <= now:
                yield replica
