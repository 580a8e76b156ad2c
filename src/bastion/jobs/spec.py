"""Job and queue declarations: what a job is, before anything runs.

A job is a plain ``def`` (it runs in a transaction: its writes and its completion
commit together, so a database effect happens exactly once) or an ``async def``
(no transaction; it talks to the outside world and runs at least once).
"""

from __future__ import annotations

import inspect
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from bastion.jobs.arguments import StoredArguments
from bastion.ratelimit import parse_limits

_NAME = re.compile(r"^[a-z][a-z0-9_.:-]{0,199}$")


@dataclass(frozen=True, slots=True)
class Retry:
    """When a failed attempt runs again.

    Attempt ``n`` that fails waits ``min(max_delay, base * factor**(n-1))``, shortened
    at random by up to ``jitter`` of itself so that jobs failing together do not
    retry together.

    Attributes:
        max_attempts: Attempts in all, the first included; after the last, the job is dead.
        base_s: Delay after the first failure.
        factor: Growth per further failure.
        max_delay_s: Upper bound of one delay.
        jitter: Share of each delay taken off at random (0 to 1).
        give_up_on: Exception types that make the job dead at once (no retry can help).
    """

    max_attempts: int = 5
    base_s: float = 1.0
    factor: float = 2.0
    max_delay_s: float = 300.0
    jitter: float = 0.5
    give_up_on: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("Retry.max_attempts must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("Retry.jitter must be between 0 and 1")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        raw = min(self.max_delay_s, self.base_s * self.factor ** max(0, attempt - 1))
        return raw * (1 - self.jitter * (rng or random).random())


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """Limits of one queue that hold across every worker process.

    Attributes:
        concurrency: Jobs of this queue running at once, in all processes together.
        rate: Starts allowed, as a limit like ``"10/second"``; bursts up to the amount.
    """

    name: str
    concurrency: int | None = None
    rate: str | None = None

    @property
    def rate_per_s(self) -> tuple[float, float] | None:
        """``(tokens per second, bucket size)`` of the rate limit, or ``None``."""
        if self.rate is None:
            return None
        (item,) = parse_limits([self.rate])
        return item.amount / item.get_expiry(), float(item.amount)


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A declared job.

    Attributes:
        name: Stable name stored with every row (defaults to the function's name).
        version: Rows carry ``name@vN``; workers run only versions they declare.
        transactional: A plain ``def`` runs in a transaction with its completion.
        timeout_s: An attempt running longer fails (async jobs are cancelled; a sync
            job's transaction is rolled back when it returns).
    """

    name: str
    version: int
    fn: Callable[..., Any]
    queue: str
    priority: int
    retry: Retry
    timeout_s: float | None
    transactional: bool
    arguments: StoredArguments
    latest: bool = True

    @property
    def handler(self) -> str:
        return f"{self.name}@v{self.version}"


@dataclass
class JobRegistry:
    """An app's jobs and queues, looked up by name and by handler."""

    jobs: dict[str, JobSpec] = field(default_factory=dict)
    queues: dict[str, QueueSpec] = field(default_factory=dict)
    #: Cron schedules by name (:class:`bastion.jobs.cron.CronSpec`).
    schedules: dict[str, Any] = field(default_factory=dict)

    def add(self, spec: JobSpec) -> None:
        if spec.handler in self.jobs:
            raise ValueError(f"job {spec.handler!r} is already declared")
        latest = self.latest(spec.name)
        if latest is not None and latest.version > spec.version:
            spec = _replace_latest(spec, False)
        elif latest is not None:
            self.jobs[latest.handler] = _replace_latest(latest, False)
        self.jobs[spec.handler] = spec

    def latest(self, name: str) -> JobSpec | None:
        versions = [s for s in self.jobs.values() if s.name == name and s.latest]
        return versions[0] if versions else None

    def by_handler(self, handler: str) -> JobSpec | None:
        return self.jobs.get(handler)

    def handlers(self, queues: Iterable[str] | None = None) -> list[str]:
        wanted = set(queues) if queues is not None else None
        return sorted(s.handler for s in self.jobs.values() if wanted is None or s.queue in wanted)

    def queue_names(self) -> list[str]:
        return sorted({s.queue for s in self.jobs.values()} | set(self.queues))


def _replace_latest(spec: JobSpec, latest: bool) -> JobSpec:
    return replace(spec, latest=latest)


def declare_job(
    fn: Callable[..., Any],
    *,
    name: str | None,
    version: int,
    queue: str,
    priority: int,
    retry: Retry | None,
    max_attempts: int | None,
    timeout: float | timedelta | None,
) -> JobSpec:
    """Check a job function's shape and describe it; raises TypeError/ValueError clearly."""
    job_name = name or fn.__name__
    label = f"job {fn.__qualname__}"
    if not _NAME.match(job_name):
        raise ValueError(f"{label}: name {job_name!r} must match {_NAME.pattern}")
    if not _NAME.match(queue) or len(queue) > 64:
        raise ValueError(f"{label}: queue {queue!r} must match {_NAME.pattern} (64 chars)")
    if version < 1:
        raise ValueError(f"{label}: version must be at least 1")
    policy = retry or Retry()
    if max_attempts is not None:
        policy = replace(policy, max_attempts=max_attempts)
    timeout_s = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
    if timeout_s is not None and timeout_s <= 0:
        raise ValueError(f"{label}: timeout must be positive")

    arguments = StoredArguments.of(fn, f"job {job_name}", "the context")
    return JobSpec(
        name=job_name,
        version=version,
        fn=fn,
        queue=queue,
        priority=priority,
        retry=policy,
        timeout_s=timeout_s,
        transactional=not inspect.iscoroutinefunction(fn),
        arguments=arguments,
    )
