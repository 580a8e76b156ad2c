"""Per-minute request statistics in the database, for the console's charts and alert rules.

They work without a Prometheus server: each server process counts requests per
(minute, route template, method) in memory (:class:`RequestStats`) and writes its counts
as new rows every ``[metrics] stats_flush_s``; readers (:func:`traffic`, :func:`totals`)
sum the rows of a minute, whichever processes wrote them. Latencies are kept as counts
per bucket of :data:`~bastion.observability.metrics.LATENCY_BUCKETS_S` (plus +Inf), so
percentiles over any set of rows are estimated from merged buckets.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Select, and_, delete, select
from sqlalchemy.orm import Session

from bastion.db.database import Database
from bastion.jobs.tables import JobRow
from bastion.monitoring.tables import RequestStatsRow
from bastion.observability.logs import get_logger
from bastion.observability.metrics import LATENCY_BUCKETS_S

#: Minutes kept in memory while the database cannot be written (about an hour).
MAX_PENDING_MINUTES = 60

_Key = tuple[datetime, str, str]


@dataclass
class _Counts:
    requests: int = 0
    errors: int = 0
    client_errors: int = 0
    latency_ms_sum: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))

    def add(self, other: _Counts) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.client_errors += other.client_errors
        self.latency_ms_sum += other.latency_ms_sum
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]


class RequestStats:
    """Counts of one process's requests per minute, route and method, until flushed.

    Thread-safe: the middleware records on the event loop, the flush runs on a thread.

    Args:
        process: Names this process in the rows (default: host, pid and a random suffix).
    """

    def __init__(self, process: str | None = None) -> None:
        self.process = (
            process or f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        )
        self._counts: dict[_Key, _Counts] = {}
        self._lock = threading.Lock()
        self._dropping_logged = False
        self.log = get_logger("bastion.monitoring")

    def record(
        self, route: str, method: str, status: int, seconds: float, *, at: datetime | None = None
    ) -> None:
        """Count one request (``at``: when it ended, default now)."""
        minute = (at or datetime.now(UTC)).replace(second=0, microsecond=0)
        bucket = bisect_left(LATENCY_BUCKETS_S, seconds)
        with self._lock:
            counts = self._counts.get((minute, route, method))
            if counts is None:
                counts = self._counts[(minute, route, method)] = _Counts()
            counts.requests += 1
            counts.errors += status >= 500
            counts.client_errors += 400 <= status < 500
            counts.latency_ms_sum += seconds * 1000
            counts.buckets[bucket] += 1

    @property
    def pending(self) -> int:
        """Requests counted but not yet written."""
        with self._lock:
            return sum(c.requests for c in self._counts.values())

    def flush(self, database: Database) -> int:
        """Write the counts so far as rows (one per minute, route and method); returns the
        number of rows. When the write fails the counts are kept for the next flush (at most
        :data:`MAX_PENDING_MINUTES` minutes of them) and the error is raised."""
        with self._lock:
            taken, self._counts = self._counts, {}
        if not taken:
            return 0
        rows = [
            RequestStatsRow(
                minute=minute,
                process=self.process,
                route=route[:512],
                method=method[:10],
                requests=c.requests,
                errors=c.errors,
                client_errors=c.client_errors,
                latency_ms_sum=c.latency_ms_sum,
                latency_buckets=c.buckets,
            )
            for (minute, route, method), c in taken.items()
        ]
        try:
            with database.transaction() as session:
                session.add_all(rows)
        except Exception:
            self._restore(taken)
            raise
        self._dropping_logged = False
        return len(rows)

    def _restore(self, taken: dict[_Key, _Counts]) -> None:
        with self._lock:
            for key, counts in taken.items():
                current = self._counts.get(key)
                if current is None:
                    self._counts[key] = counts
                else:
                    current.add(counts)
            minutes = sorted({key[0] for key in self._counts})
            if len(minutes) <= MAX_PENDING_MINUTES:
                return
            oldest_kept = minutes[-MAX_PENDING_MINUTES]
            dropped = [key for key in self._counts if key[0] < oldest_kept]
            for key in dropped:
                del self._counts[key]
        if not self._dropping_logged:
            # Once per outage: the database has been unwritable for an hour already.
            self._dropping_logged = True
            self.log.warning("request_stats_dropped", oldest_kept=oldest_kept.isoformat())


@dataclass(frozen=True)
class TrafficMinute:
    """The requests of one minute, summed over routes and processes."""

    minute: datetime
    requests: int
    errors: int
    client_errors: int
    p50_ms: float | None
    p95_ms: float | None


@dataclass(frozen=True)
class TrafficTotals:
    """The requests of a window; ``error_rate`` is 5xx over all (0 without requests)."""

    requests: int
    errors: int
    client_errors: int
    error_rate: float
    p50_ms: float | None
    p95_ms: float | None


def _rows(since: datetime, until: datetime | None, route: str | None) -> Select[RequestStatsRow]:
    conditions = [RequestStatsRow.minute >= _minute(since)]
    if until is not None:
        conditions.append(RequestStatsRow.minute <= until)
    if route is not None:
        conditions.append(RequestStatsRow.route == route)
    return select(RequestStatsRow).where(and_(*conditions))


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def _merge(rows: Iterable[RequestStatsRow]) -> _Counts:
    merged = _Counts()
    for row in rows:
        merged.add(
            _Counts(
                row.requests,
                row.errors,
                row.client_errors,
                row.latency_ms_sum,
                list(row.latency_buckets),
            )
        )
    return merged


def percentile(buckets: Sequence[int], quantile: float) -> float | None:
    """The ``quantile`` (0..1) latency in milliseconds estimated from bucket counts.

    The estimate interpolates linearly inside the bucket holding the rank (from its lower
    bound, 0 for the first, to its upper bound); a rank in the +Inf bucket answers the
    largest finite bound. So the estimate is always within the true value's bucket.
    ``None`` without requests.
    """
    total = sum(buckets)
    if total == 0:
        return None
    rank = quantile * total
    seen = 0
    for index, count in enumerate(buckets):
        if count and seen + count >= rank:
            if index == len(LATENCY_BUCKETS_S):
                return LATENCY_BUCKETS_S[-1] * 1000
            lower = LATENCY_BUCKETS_S[index - 1] if index else 0.0
            upper = LATENCY_BUCKETS_S[index]
            return (lower + (upper - lower) * (rank - seen) / count) * 1000
        seen += count
    return LATENCY_BUCKETS_S[-1] * 1000


def traffic(
    session: Session, since: datetime, until: datetime | None = None, *, route: str | None = None
) -> list[TrafficMinute]:
    """Requests per minute from ``since`` (its minute included) to ``until``, oldest first;
    minutes without requests are left out. p50 and p95 are estimated from the merged
    latency buckets by linear interpolation inside the bucket (see :func:`percentile`)."""
    by_minute: dict[datetime, list[RequestStatsRow]] = {}
    for row in session.scalars(_rows(since, until, route)):
        by_minute.setdefault(row.minute, []).append(row)
    result = []
    for minute in sorted(by_minute):
        merged = _merge(by_minute[minute])
        result.append(
            TrafficMinute(
                minute=minute,
                requests=merged.requests,
                errors=merged.errors,
                client_errors=merged.client_errors,
                p50_ms=percentile(merged.buckets, 0.5),
                p95_ms=percentile(merged.buckets, 0.95),
            )
        )
    return result


def totals(
    session: Session, since: datetime, until: datetime | None = None, *, route: str | None = None
) -> TrafficTotals:
    """The requests of the window summed (percentiles as in :func:`traffic`)."""
    merged = _merge(session.scalars(_rows(since, until, route)))
    return TrafficTotals(
        requests=merged.requests,
        errors=merged.errors,
        client_errors=merged.client_errors,
        error_rate=merged.errors / merged.requests if merged.requests else 0.0,
        p50_ms=percentile(merged.buckets, 0.5),
        p95_ms=percentile(merged.buckets, 0.95),
    )


def job_throughput(
    session: Session, since: datetime, until: datetime | None = None
) -> list[tuple[datetime, int, int]]:
    """Jobs finished per minute as ``(minute, succeeded, failed)``, oldest first, from
    ``bastion_jobs.finished_at`` ("failed" counts dead jobs: failed for good). Minutes
    without finished jobs are left out; finished jobs purged by housekeeping are gone."""
    conditions = [JobRow.finished_at >= _minute(since), JobRow.status.in_(("succeeded", "dead"))]
    if until is not None:
        conditions.append(JobRow.finished_at <= until)
    counts: dict[datetime, list[int]] = {}
    for finished_at, status in session.execute(
        select(JobRow.finished_at, JobRow.status).where(and_(*conditions))
    ):
        if finished_at is None:  # excluded by the filter; narrows the type
            continue
        tally = counts.setdefault(_minute(finished_at), [0, 0])
        tally[0 if status == "succeeded" else 1] += 1
    return [(minute, ok, failed) for minute, (ok, failed) in sorted(counts.items())]


def purge(session: Session, older_than: timedelta, *, now: datetime | None = None) -> int:
    """Delete statistics of minutes older than ``older_than``; returns the rows deleted."""
    cutoff = (now or datetime.now(UTC)) - older_than
    deleted = session.execute(delete(RequestStatsRow).where(RequestStatsRow.minute < cutoff))
    return int(getattr(deleted, "rowcount", 0) or 0)


__all__ = [
    "MAX_PENDING_MINUTES",
    "RequestStats",
    "TrafficMinute",
    "TrafficTotals",
    "job_throughput",
    "percentile",
    "purge",
    "totals",
    "traffic",
]
