"""Prometheus metrics of one runtime: HTTP, jobs, workflow steps, breakers, limits, caches.

Each :class:`Metrics` has its own ``CollectorRegistry``; nothing is registered in
prometheus-client's default registry, so tests can build as many runtimes as they like.

With several server processes (``bastion run --workers N``) the values live in
prometheus-client's multiprocess files (``PROMETHEUS_MULTIPROC_DIR`` or ``[metrics]
multiprocess_dir``) and any process's scrape sums every process's counts; see
docs/decisions/0007-metrics-multiprocess.md. Facts of the database (jobs by status, queue
lag) are not counted here: a collector registered by the runtime reads them at scrape time.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.registry import Collector

from bastion.observability.logs import get_logger

#: Upper bounds (seconds) of the latency histograms, shared with the per-minute request
#: statistics in the database (``bastion.monitoring.stats``), whose last bucket is +Inf.
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

#: The ``route`` of a request no route matched (a 404): raw paths would make one series
#: per URL anyone cares to try.
UNMATCHED = "<unmatched>"

#: ``bastion_circuit_breaker_state`` values.
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}

_ENV = "PROMETHEUS_MULTIPROC_DIR"


class CacheCounts(Protocol):
    """What a query cache counts itself (``bastion.cache`` backends)."""

    hits: int
    misses: int
    invalidations: int


class PoolLike(Protocol):
    def checkedout(self) -> int: ...

    def checkedin(self) -> int: ...


def multiprocess_dir(configured: str | None) -> str | None:
    """The multiprocess folder in effect: the environment's, else the configured one."""
    return os.environ.get(_ENV) or configured or None


def prepare_multiprocess_dir(path: str | Path, *, wipe: bool) -> None:
    """Create ``path``, export it as ``PROMETHEUS_MULTIPROC_DIR`` for this process and its
    children, and (``wipe``, at server start) delete value files left by earlier runs,
    whose counts would otherwise be added to this run's."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    if wipe:
        for stale in folder.glob("*.db"):
            stale.unlink(missing_ok=True)
    os.environ[_ENV] = str(folder)


class Metrics:
    """The metric families of one runtime; pass it to what it instruments.

    Args:
        multiprocess_dir: prometheus-client's multiprocess folder; ``None``: this process's
            values only.
    """

    def __init__(self, *, multiprocess_dir: str | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess_dir = multiprocess_dir
        self.log = get_logger("bastion.metrics")
        if multiprocess_dir:
            prepare_multiprocess_dir(multiprocess_dir, wipe=False)
            if values.ValueClass is values.MutexValue:
                # prometheus-client picks its value class when first imported; a process
                # that imported it before the folder was known switches now, before any
                # of our values exist.
                values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
            multiprocess.MultiProcessCollector(self.registry, path=multiprocess_dir)  # type: ignore[no-untyped-call]
        # In multiprocess mode values go to files, and the collector above reads them all;
        # registering the objects as well would report this process's values twice.
        into = None if multiprocess_dir else self.registry
        self.http_requests = Counter(
            "bastion_http_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=into,
        )
        self.http_duration = Histogram(
            "bastion_http_request_duration_seconds",
            "HTTP request duration until the response ended.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS_S,
            registry=into,
        )
        self.http_in_progress = Gauge(
            "bastion_http_requests_in_progress",
            "HTTP requests being served now.",
            registry=into,
            multiprocess_mode="livesum",
        )
        self.jobs_enqueued = Counter(
            "bastion_jobs_enqueued",
            "Jobs enqueued (counted when their transaction commits).",
            ["queue", "job"],
            registry=into,
        )
        self.job_runs = Counter(
            "bastion_job_runs",
            "Job attempts by outcome: succeeded, failed (will be retried), retried (asked "
            "to run later), dead.",
            ["queue", "job", "outcome"],
            registry=into,
        )
        self.job_duration = Histogram(
            "bastion_job_duration_seconds",
            "Duration of job attempts.",
            ["queue", "job"],
            buckets=(*LATENCY_BUCKETS_S, 30.0, 60.0, 300.0),
            registry=into,
        )
        self.workflow_steps = Counter(
            "bastion_workflow_steps",
            "Workflow steps run by outcome: succeeded, retried (an attempt failed), failed "
            "(for good), compensated.",
            ["workflow", "step", "outcome"],
            registry=into,
        )
        self.breaker_state = Gauge(
            "bastion_circuit_breaker_state",
            "Circuit breaker state as this process last saw it: 0 closed, 1 half-open, 2 open "
            "(the worst of the live processes).",
            ["name"],
            registry=into,
            multiprocess_mode="livemax",
        )
        self.breaker_transitions = Counter(
            "bastion_circuit_breaker_transitions",
            "Circuit breaker state changes seen by this app's processes.",
            ["name", "state"],
            registry=into,
        )
        self.rate_limit_hits = Counter(
            "bastion_rate_limit_hits",
            "Requests refused with 429, by the limit that refused them: ip, user, key, "
            "global, function.",
            ["scope"],
            registry=into,
        )
        self.cache_requests = Counter(
            "bastion_cache_requests",
            "Cached query lookups by result.",
            ["result"],
            registry=into,
        )
        self.cache_invalidations = Counter(
            "bastion_cache_invalidations",
            "Cached query results dropped by commits.",
            registry=into,
        )
        self.db_pool = Gauge(
            "bastion_db_pool_connections",
            "Database connections of the pools by state.",
            ["state", "database"],
            registry=into,
            multiprocess_mode="livesum",
        )
        self.realtime_connections = Gauge(
            "bastion_realtime_connections",
            "Open realtime connections (WebSocket and SSE).",
            registry=into,
            multiprocess_mode="livesum",
        )
        self._request_series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._samplers: list[Callable[[], None]] = []
        self._sampling = threading.Lock()

    # -- what instrumented code calls ----------------------------------------------

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._request_series.get(key)
        if children is None:
            # ``labels()`` hashes and locks on every call; the request path keeps its own
            # lookup (as many entries as series, which route templates bound).
            children = (
                self.http_requests.labels(route, method, str(status)),
                self.http_duration.labels(route, method),
            )
            self._request_series[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def job_enqueued(self, queue: str, job: str, count: int = 1) -> None:
        self.jobs_enqueued.labels(queue, job).inc(count)

    def job_run(self, queue: str, job: str, outcome: str, seconds: float) -> None:
        self.job_runs.labels(queue, job, outcome).inc()
        self.job_duration.labels(queue, job).observe(seconds)

    def workflow_step(self, workflow: str, step: str, outcome: str) -> None:
        self.workflow_steps.labels(workflow, step, outcome).inc()

    def breaker_changed(self, name: str, state: str) -> None:
        self.breaker_state.labels(name).set(BREAKER_STATES[state])
        self.breaker_transitions.labels(name, state).inc()

    def rate_limited(self, scope: str) -> None:
        self.rate_limit_hits.labels(scope).inc()

    # -- values other services keep themselves ----------------------------------------

    def add_sampler(self, sampler: Callable[[], None]) -> None:
        """Run ``sampler`` before every scrape and at every statistics flush: it copies a
        value a service keeps itself into a metric (each process's files then stay fresh
        for a scrape served by another process)."""
        self._samplers.append(sampler)

    def watch_cache(self, cache: CacheCounts) -> None:
        """Export a query cache's own hit, miss and invalidation counts."""
        seen = {"hit": 0, "miss": 0, "invalidations": 0}

        def sample() -> None:
            now = {"hit": cache.hits, "miss": cache.misses, "invalidations": cache.invalidations}
            for result in ("hit", "miss"):
                if now[result] > seen[result]:
                    self.cache_requests.labels(result).inc(now[result] - seen[result])
            if now["invalidations"] > seen["invalidations"]:
                self.cache_invalidations.inc(now["invalidations"] - seen["invalidations"])
            seen.update(now)

        for result in ("hit", "miss"):
            self.cache_requests.labels(result)  # present at zero from the first scrape
        self.add_sampler(sample)

    def watch_pools(self, database: str, pools: Iterable[Any]) -> None:
        """Export connections in use and idle of SQLAlchemy pools under ``database``.

        Pools without counts (SQLite's ``:memory:`` single-connection pools) are skipped.
        """
        counted: list[PoolLike] = [
            pool for pool in pools if hasattr(pool, "checkedout") and hasattr(pool, "checkedin")
        ]

        def sample() -> None:
            self.db_pool.labels("in_use", database).set(sum(p.checkedout() for p in counted))
            self.db_pool.labels("idle", database).set(sum(p.checkedin() for p in counted))

        if counted:
            self.add_sampler(sample)

    def watch_gauge(self, gauge: Gauge, read: Callable[[], float]) -> None:
        self.add_sampler(lambda: gauge.set(read()))

    def sample(self) -> None:
        with self._sampling:
            for sampler in self._samplers:
                try:
                    sampler()
                except Exception as exc:  # a broken sampler must not break the scrape
                    self.log.warning("metrics_sampler_failed", error=f"{type(exc).__name__}: {exc}")

    def register(self, collector: Collector) -> None:
        """Add a scrape-time collector (the database's job and workflow counts)."""
        self.registry.register(collector)

    def exposition(self) -> bytes:
        """The Prometheus text format of every family; may block (collectors query the
        database), so call it from a worker thread."""
        self.sample()
        return generate_latest(self.registry)

    def close(self) -> None:
        """This process is going away: drop its live gauges from the shared files."""
        if self.multiprocess_dir:
            multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)  # type: ignore[no-untyped-call]
