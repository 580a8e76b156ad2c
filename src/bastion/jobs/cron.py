"""Cron: schedules that enqueue a job once per tick, whatever the number of processes.

Every worker runs the scheduler. For a due tick it inserts ``(schedule, fire_time)``
into ``bastion_cron_fires`` and enqueues the job in the same transaction; the primary
key lets exactly one process win the tick, the others insert nothing.

After downtime (no worker running when ticks fell due), ``catch_up`` decides:

- ``"skip"``: missed ticks are dropped; the schedule resumes at its next tick;
- ``"once"``: the missed ticks are run once, as the latest of them, on start.

A tick counts as "on time" (not missed) while it is younger than ``[jobs] cron_grace_s``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from croniter import croniter
from sqlalchemy import Table, func, select
from sqlalchemy.dialects import postgresql, sqlite

from bastion.db.database import Database
from bastion.jobs.spec import JobSpec
from bastion.jobs.store import enqueue
from bastion.jobs.tables import CronFireRow

CatchUp = Literal["skip", "once"]
FIRES: Table = CronFireRow.__table__  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class CronSpec:
    """A schedule: ``expression`` (five cron fields, UTC) enqueues ``job`` with no arguments."""

    name: str
    expression: str
    job: JobSpec
    catch_up: CatchUp = "skip"

    def latest_tick(self, now: datetime) -> datetime:
        """The last tick at or before ``now``."""
        # croniter's get_prev is strictly before its start: nudge past ``now`` so a
        # tick falling exactly on ``now`` counts.
        tick: datetime = croniter(self.expression, now + timedelta(microseconds=1)).get_prev(
            datetime
        )
        return tick.astimezone(UTC)

    def next_tick(self, now: datetime) -> datetime:
        tick: datetime = croniter(self.expression, now).get_next(datetime)
        return tick.astimezone(UTC)

    def due(self, now: datetime, last: datetime | None, grace: timedelta) -> datetime | None:
        """The tick to fire now, if any, given the last one fired."""
        tick = self.latest_tick(now)
        if last is not None and tick <= last:
            return None
        late = now - tick > grace
        if late and (last is None or self.catch_up == "skip"):
            return None
        return tick


def check_expression(expression: str, label: str) -> None:
    if len(expression.split()) != 5 or not croniter.is_valid(expression):
        raise ValueError(f"{label}: {expression!r} is not a five-field cron expression")


class Scheduler:
    """Fires due ticks of ``schedules`` into the job table."""

    def __init__(
        self,
        database: Database,
        schedules: Sequence[CronSpec],
        *,
        grace_s: float,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.database = database
        self.schedules = list(schedules)
        self.grace = timedelta(seconds=grace_s)
        self.clock = clock or (lambda: datetime.now(UTC))

    def tick(self, now: datetime | None = None) -> list[tuple[str, datetime]]:
        """Fire every due tick; returns the ``(schedule, fire_time)`` this call won."""
        now = now or self.clock()
        fired = []
        for schedule in self.schedules:
            with self.database.transaction() as session:
                last = session.execute(
                    select(func.max(FIRES.c.fire_time)).where(FIRES.c.schedule == schedule.name)
                ).scalar()
                due = schedule.due(now, last, self.grace)
                if due is None:
                    continue
                dialect = session.get_bind().dialect.name
                statement = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(FIRES)
                won = session.execute(
                    statement.values(schedule=schedule.name, fire_time=due, created_at=now)
                    .on_conflict_do_nothing()
                    .returning(FIRES.c.schedule)
                ).scalar_one_or_none()
                if won is None:
                    continue
                job_id = enqueue(
                    session,
                    schedule.job,
                    {},
                    dedup_key=f"cron:{schedule.name}:{due.isoformat()}",
                )
                session.execute(
                    FIRES.update()
                    .where(FIRES.c.schedule == schedule.name, FIRES.c.fire_time == due)
                    .values(job_id=job_id)
                )
                fired.append((schedule.name, due))
        return fired

    def seconds_to_next(self, now: datetime | None = None) -> float:
        now = now or self.clock()
        soonest = min(s.next_tick(now) for s in self.schedules)
        return max(0.0, (soonest - now).total_seconds())
