"""What each kind of rule measures, now: a number, whether it breaches, and a sentence."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

import anyio.to_thread
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bastion.db.database import Database
from bastion.integrations import HttpClient
from bastion.jobs.store import JobStatus
from bastion.jobs.tables import JobRow
from bastion.mail import Mailer
from bastion.monitoring.stats import totals
from bastion.observability.health import HealthRegistry
from bastion.settings import Settings
from bastion.settings.sections import AlertRule

T = TypeVar("T")


class _Named(Protocol):
    @property
    def name(self) -> str: ...


class AlertServices(Protocol):
    """What evaluating rules needs of the runtime (``ctx.services`` in the alerts job)."""

    @property
    def app(self) -> _Named: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def database(self) -> Database: ...

    @property
    def http(self) -> HttpClient: ...

    @property
    def mail(self) -> Mailer: ...

    @property
    def health(self) -> HealthRegistry: ...


@dataclass(frozen=True, slots=True)
class Reading:
    """One measurement of a rule: ``value`` is ``None`` when there was too little to measure."""

    value: float | None
    breached: bool
    summary: str


async def measure(services: AlertServices, rule: AlertRule, now: datetime) -> Reading:
    """Measure ``rule`` as of ``now``; raises when its source cannot be read."""
    if rule.kind in ("error_rate", "p95_latency"):
        return await _read(services.database, lambda session: _traffic(session, rule, now))
    if rule.kind == "dead_jobs":
        return await _read(services.database, lambda session: _dead_jobs(session, rule))
    if rule.kind == "circuit_open":
        snapshots = await services.http.breaker.snapshots()
        # An open breaker stays open until a call succeeds: a dependency nobody has
        # called since it failed is still reported, which is what ops want to know.
        names = sorted(name for name, snap in snapshots.items() if snap.state != "closed")
        listed = ", ".join(names) or "none"
        return Reading(len(names), len(names) > rule.threshold, f"open circuits: {listed}")
    status, results = await services.health.run()
    critical = {check.name for check in services.health.checks if check.critical}
    failing = [r for r in results if not r.healthy and r.name in critical]
    described = ", ".join(f"{r.name} ({r.error})" for r in failing) or "none"
    return Reading(
        len(failing), len(failing) > rule.threshold, f"{status}; failing checks: {described}"
    )


async def _read(database: Database, read: Callable[[Session], T]) -> T:
    def run() -> T:
        with database.read_transaction() as session:
            return read(session)

    return await anyio.to_thread.run_sync(run)


def _traffic(session: Session, rule: AlertRule, now: datetime) -> Reading:
    seen = totals(session, now - timedelta(seconds=rule.window_s), now, route=rule.route)
    scope = f"{_minutes(rule.window_s)}{f' on {rule.route}' if rule.route else ''}"
    if seen.requests < rule.min_requests:
        return Reading(
            None,
            False,
            f"{seen.requests} requests in the last {scope}, fewer than {rule.min_requests}",
        )
    if rule.kind == "error_rate":
        rate = seen.errors / seen.requests
        return Reading(
            rate,
            rate > rule.threshold,
            f"error rate {rate:.1%} over the last {scope} "
            f"({seen.errors} of {seen.requests} requests answered 5xx; "
            f"threshold {rule.threshold:.1%})",
        )
    p95 = seen.p95_ms
    if p95 is None:
        return Reading(None, False, f"no latency recorded in the last {scope}")
    return Reading(
        p95,
        p95 > rule.threshold,
        f"p95 latency {p95:.0f} ms over the last {scope} "
        f"({seen.requests} requests; threshold {rule.threshold:.0f} ms)",
    )


def _dead_jobs(session: Session, rule: AlertRule) -> Reading:
    # Every dead job, however old: one stays dead (and the rule firing) until someone
    # retries or cancels it, or housekeeping purges it; a window would "resolve" an
    # alert nobody acted on.
    count = session.scalar(
        select(func.count()).select_from(JobRow).where(JobRow.status == JobStatus.DEAD.value)
    )
    dead = int(count or 0)
    return Reading(dead, dead > rule.threshold, f"dead jobs: {dead}")


def _minutes(seconds: int) -> str:
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"
