"""The job table's state machine in SQL: enqueue, claim, settle, lease, reap, admin.

Every method here is synchronous and short (the worker runs them on threads), and
every state change a worker makes is fenced by the claim token it got with the job.

States: ``queued`` → ``running`` → ``succeeded`` | ``queued`` (retry) | ``dead``;
``queued``/``running`` → ``cancelled`` by an operator.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Table, and_, bindparam, func, insert, select, text, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bastion.db.database import Database
from bastion.db.tables import utcnow
from bastion.jobs.spec import JobSpec, QueueSpec
from bastion.jobs.tables import CronFireRow, JobRow, QueueRow
from bastion.observability.tracing import current_traceparent

JOBS: Table = JobRow.__table__  # type: ignore[assignment]
QUEUES: Table = QueueRow.__table__  # type: ignore[assignment]
FIRES: Table = CronFireRow.__table__  # type: ignore[assignment]

#: The PostgreSQL channel that wakes workers; the payload is the queue name.
CHANNEL = "bastion_jobs"
#: Marks a session that enqueued jobs, for the wake-up after its commit.
ENQUEUED = "bastion.jobs.enqueued"
#: Jobs a session enqueued per (queue, job name), counted in metrics after its commit.
ENQUEUED_COUNTS = "bastion.jobs.enqueued_counts"
#: Errors kept per job: the last one only; the log keeps the rest.
MAX_ERROR_CHARS = 4000


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Claimed:
    """A job a worker holds: run it, then settle it with ``token`` before ``lease_until``."""

    id: int
    queue: str
    handler: str
    args: dict[str, Any]
    attempt: int
    max_attempts: int
    timeout_s: float | None
    token: str
    request_id: str | None
    trace_context: str | None = None
    """The ``traceparent`` of the span that enqueued it: its run's span continues that trace."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an attempt ended; settled in batches.

    ``status`` is ``succeeded``, ``queued`` (run again at ``run_at``), ``dead`` or
    ``released`` (given back unrun at shutdown: the attempt does not count).
    """

    id: int
    token: str
    status: str
    result: Any = None
    error: str | None = None
    run_at: datetime | None = None


def enqueue(
    session: Session,
    spec: JobSpec,
    args: Mapping[str, Any],
    *,
    run_at: datetime | None = None,
    priority: int | None = None,
    dedup_key: str | None = None,
    request_id: str | None = None,
) -> int:
    """Insert a job in ``session``'s transaction; returns its id.

    With a ``dedup_key`` already used (by a job in any state), nothing is inserted
    and the existing job's id is returned: that is how cron ticks and workflow
    children happen once.
    """
    values = _row(spec, spec.arguments.dump(args), run_at, priority, dedup_key, request_id)
    dialect = session.get_bind().dialect.name
    if dedup_key is None:
        job_id = session.execute(insert(JOBS).values(values).returning(JOBS.c.id)).scalar_one()
    else:
        statement = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(JOBS)
        inserted = session.execute(
            statement.values(values)
            .on_conflict_do_nothing(index_elements=["dedup_key"])
            .returning(JOBS.c.id)
        ).scalar_one_or_none()
        if inserted is None:
            existing: int = session.execute(
                select(JOBS.c.id).where(JOBS.c.dedup_key == dedup_key)
            ).scalar_one()
            return existing
        job_id = inserted
    _announce(session, spec.queue, dialect)
    _count(session, spec, 1)
    return int(job_id)


def enqueue_many(
    session: Session,
    spec: JobSpec,
    many: Sequence[Mapping[str, Any]],
    *,
    priority: int | None = None,
) -> int:
    """Insert many jobs of one kind in one statement (bulk loads, benchmarks)."""
    if not many:
        return 0
    now = utcnow()
    rows = [_row(spec, spec.arguments.dump(args), now, priority, None, None) for args in many]
    session.execute(insert(JOBS), rows)
    _announce(session, spec.queue, session.get_bind().dialect.name)
    _count(session, spec, len(rows))
    return len(rows)


def _row(
    spec: JobSpec,
    args: dict[str, Any],
    run_at: datetime | None,
    priority: int | None,
    dedup_key: str | None,
    request_id: str | None,
) -> dict[str, Any]:
    now = utcnow()
    return {
        "queue": spec.queue,
        "name": spec.name,
        "handler": spec.handler,
        "args": args,
        "status": JobStatus.QUEUED.value,
        "priority": spec.priority if priority is None else priority,
        "run_at": run_at or now,
        "attempts": 0,
        "max_attempts": spec.retry.max_attempts,
        "timeout_s": spec.timeout_s,
        "dedup_key": dedup_key,
        "request_id": request_id,
        # Whoever enqueues (a request's mutation, a workflow step, a cron tick) is the
        # parent of the job's runs, in whichever process they happen.
        "trace_context": current_traceparent(),
        "created_at": now,
    }


def _count(session: Session, spec: JobSpec, count: int) -> None:
    counts: dict[tuple[str, str], int] = session.info.setdefault(ENQUEUED_COUNTS, {})
    key = (spec.queue, spec.name)
    counts[key] = counts.get(key, 0) + count


def _announce(session: Session, queue: str, dialect: str) -> None:
    queues: set[str] = session.info.setdefault(ENQUEUED, set())
    if queue in queues:
        return
    queues.add(queue)
    if dialect == "postgresql":
        # NOTIFY is transactional: listeners hear it at commit, never for a rollback.
        session.execute(
            text("SELECT pg_notify(:channel, :queue)"), {"channel": CHANNEL, "queue": queue}
        )


class JobStore:
    """SQL over the job tables of one database."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.postgres = database.backend == "postgresql"

    # -- claiming -------------------------------------------------------------

    def claim(
        self,
        handlers: Mapping[str, Sequence[str]],
        limit: int,
        *,
        worker: str,
        lease_s: float,
        limits: Mapping[str, QueueSpec] | None = None,
    ) -> list[Claimed]:
        """Take up to ``limit`` due jobs of ``handlers`` (queue → handler names) in one
        transaction. Queues with a concurrency or rate limit are claimed under a lock
        on the queue, so the limit holds across processes."""
        limits = limits or {}
        claimed: list[Claimed] = []
        with self.database.transaction() as session:
            now = utcnow()
            free = [q for q in handlers if q not in limits]
            if free:
                claimed += self._claim(session, free, handlers, limit, worker, lease_s, now)
            for queue in handlers:
                room = limit - len(claimed)
                if queue not in limits or room <= 0:
                    continue
                room, locked_at = self._room(session, limits[queue], room)
                if room > 0:
                    taken = self._claim(
                        session, [queue], handlers, room, worker, lease_s, locked_at
                    )
                    self._spend(session, limits[queue], len(taken), locked_at)
                    claimed += taken
        return claimed

    def _claim(
        self,
        session: Session,
        queues: Sequence[str],
        handlers: Mapping[str, Sequence[str]],
        limit: int,
        worker: str,
        lease_s: float,
        now: datetime,
    ) -> list[Claimed]:
        names = [h for q in queues for h in handlers[q]]
        due = (
            select(JOBS.c.id)
            .where(
                JOBS.c.status == JobStatus.QUEUED.value,
                JOBS.c.queue.in_(queues),
                JOBS.c.run_at <= now,
                JOBS.c.handler.in_(names),
            )
            .order_by(JOBS.c.priority.desc(), JOBS.c.run_at, JOBS.c.id)
            .limit(limit)
        )
        if self.postgres:
            due = due.with_for_update(skip_locked=True)
        token = secrets.token_hex(8)
        rows = session.execute(
            update(JOBS)
            .where(JOBS.c.id.in_(due.scalar_subquery()))
            .values(
                status=JobStatus.RUNNING.value,
                attempts=JOBS.c.attempts + 1,
                claim_token=token,
                lease_until=now + timedelta(seconds=lease_s),
                worker=worker,
                started_at=now,
            )
            .returning(
                JOBS.c.id,
                JOBS.c.queue,
                JOBS.c.handler,
                JOBS.c.args,
                JOBS.c.attempts,
                JOBS.c.max_attempts,
                JOBS.c.timeout_s,
                JOBS.c.request_id,
                JOBS.c.trace_context,
                JOBS.c.priority,
                JOBS.c.run_at,
            )
        ).all()
        # RETURNING gives no order; run the most urgent first.
        rows = sorted(rows, key=lambda r: (-r.priority, r.run_at, r.id))
        return [
            Claimed(
                id=r.id,
                queue=r.queue,
                handler=r.handler,
                args=r.args,
                attempt=r.attempts,
                max_attempts=r.max_attempts,
                timeout_s=r.timeout_s,
                token=token,
                request_id=r.request_id,
                trace_context=r.trace_context,
            )
            for r in rows
        ]

    def _room(self, session: Session, queue: QueueSpec, wanted: int) -> tuple[int, datetime]:
        """How many jobs of ``queue`` may start now, and that now: read once the queue's
        lock is held. A time read before waiting for the lock would be older than the
        refill another claimer just wrote, and the bucket would be refilled twice."""
        if self.postgres:
            # Held to the end of the claim transaction: one claimer per limited queue.
            session.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                {"key": f"{CHANNEL}:{queue.name}"},
            )
        else:
            session.connection()  # BEGIN IMMEDIATE: the database's write lock
        now = utcnow()
        room = wanted
        if queue.concurrency is not None:
            running = session.execute(
                select(func.count())
                .select_from(JOBS)
                .where(JOBS.c.status == JobStatus.RUNNING.value, JOBS.c.queue == queue.name)
            ).scalar_one()
            room = min(room, queue.concurrency - running)
        if queue.rate_per_s is not None:
            room = min(room, math.floor(self._tokens(session, queue, now)))
        return max(0, room), now

    def _tokens(self, session: Session, queue: QueueSpec, now: datetime) -> float:
        assert queue.rate_per_s is not None
        per_s, burst = queue.rate_per_s
        row = session.execute(
            select(QUEUES.c.tokens, QUEUES.c.refilled_at).where(QUEUES.c.queue == queue.name)
        ).first()
        if row is None:
            session.execute(insert(QUEUES).values(queue=queue.name, tokens=burst, refilled_at=now))
            return burst
        elapsed = max(0.0, (now - row.refilled_at).total_seconds())
        return float(min(burst, row.tokens + elapsed * per_s))

    def _spend(self, session: Session, queue: QueueSpec, taken: int, now: datetime) -> None:
        if queue.rate_per_s is None:
            return
        left = self._tokens(session, queue, now) - taken
        session.execute(
            update(QUEUES).where(QUEUES.c.queue == queue.name).values(tokens=left, refilled_at=now)
        )

    # -- settling ------------------------------------------------------------------

    def settle(self, outcomes: Iterable[Outcome]) -> set[int]:
        """Record many attempts' ends in one transaction; returns the ids whose token
        no longer matched (another worker owns them now: nothing was written)."""
        outcomes = list(outcomes)
        if not outcomes:
            return set()
        with self.database.transaction() as session:
            return self.settle_in(session, outcomes)

    def settle_in(self, session: Session, outcomes: Sequence[Outcome]) -> set[int]:
        now = utcnow()
        fenced = and_(JOBS.c.id == bindparam("b_id"), JOBS.c.claim_token == bindparam("b_token"))
        # Plain successes (no result, no error: most jobs) share one statement.
        plain = [
            o
            for o in outcomes
            if o.status == JobStatus.SUCCEEDED and o.result is None and o.error is None
        ]
        lost = self._settle_plain(session, plain, now)
        settled = {o.id for o in plain}
        for outcome in outcomes:
            if outcome.id in settled:
                continue
            values: dict[str, Any] = {"claim_token": None, "lease_until": None}
            if outcome.status == "released":
                values |= {
                    "status": JobStatus.QUEUED.value,
                    "attempts": JOBS.c.attempts - 1,
                    "run_at": now,
                }
            elif outcome.status == JobStatus.QUEUED:
                values |= {
                    "status": JobStatus.QUEUED.value,
                    "run_at": outcome.run_at or now,
                    "last_error": _clip(outcome.error),
                }
            else:
                values |= {"status": outcome.status, "finished_at": now, "result": outcome.result}
                if outcome.error is not None:  # a success keeps the error it recovered from
                    values["last_error"] = _clip(outcome.error)
            changed = _changed(
                session.execute(
                    update(JOBS).where(fenced).values(values),
                    {"b_id": outcome.id, "b_token": outcome.token},
                )
            )
            if changed == 0:
                lost.add(outcome.id)
        return lost

    def _settle_plain(self, session: Session, plain: Sequence[Outcome], now: datetime) -> set[int]:
        if not plain:
            return set()
        done = session.execute(
            update(JOBS)
            .where(tuple_(JOBS.c.id, JOBS.c.claim_token).in_([(o.id, o.token) for o in plain]))
            .values(
                status=JobStatus.SUCCEEDED.value,
                finished_at=now,
                result=None,
                claim_token=None,
                lease_until=None,
            )
            .returning(JOBS.c.id)
        ).scalars()
        return {o.id for o in plain} - set(done)

    def extend(
        self, held: Sequence[tuple[int, str]], lease_s: float, progress: Mapping[int, Any]
    ) -> set[int]:
        """Push the leases of ``held`` (id, token) forward; returns ids no longer held."""
        if not held:
            return set()
        lost: set[int] = set()
        with self.database.transaction() as session:
            until = utcnow() + timedelta(seconds=lease_s)
            for job_id, token in held:
                values: dict[str, Any] = {"lease_until": until}
                if job_id in progress:
                    values["progress"] = progress[job_id]
                changed = _changed(
                    session.execute(
                        update(JOBS)
                        .where(JOBS.c.id == job_id, JOBS.c.claim_token == token)
                        .values(values)
                    )
                )
                if changed == 0:
                    lost.add(job_id)
        return lost

    def reap(self) -> int:
        """Give back jobs whose worker died (lease ran out): queued again, or dead when
        that was their last attempt. Returns how many."""
        with self.database.transaction() as session:
            now = utcnow()
            expired = and_(JOBS.c.status == JobStatus.RUNNING.value, JOBS.c.lease_until < now)
            error = "worker lost: lease expired before the attempt ended"
            dead = _changed(
                session.execute(
                    update(JOBS)
                    .where(expired, JOBS.c.attempts >= JOBS.c.max_attempts)
                    .values(
                        status=JobStatus.DEAD.value,
                        claim_token=None,
                        lease_until=None,
                        finished_at=now,
                        last_error=error,
                    )
                )
            )
            requeued = _changed(
                session.execute(
                    update(JOBS)
                    .where(expired)
                    .values(
                        status=JobStatus.QUEUED.value,
                        claim_token=None,
                        lease_until=None,
                        run_at=now,
                        last_error=error,
                    )
                )
            )
        return int(dead + requeued)

    # -- operators -----------------------------------------------------------------

    def get(self, job_id: int) -> JobRow | None:
        with self.database.read_transaction() as session:
            return session.get(JobRow, job_id)

    def list(
        self,
        *,
        status: str | None = None,
        queue: str | None = None,
        name: str | None = None,
        limit: int = 50,
    ) -> list[JobRow]:
        with self.database.read_transaction() as session:
            query = select(JobRow).order_by(JobRow.id.desc()).limit(limit)
            if status:
                query = query.where(JobRow.status == status)
            if queue:
                query = query.where(JobRow.queue == queue)
            if name:
                query = query.where(JobRow.name == name)
            return list(session.scalars(query))

    def counts(self) -> dict[tuple[str, str], int]:
        """Jobs per (queue, status)."""
        with self.database.read_transaction() as session:
            rows = session.execute(
                select(JOBS.c.queue, JOBS.c.status, func.count()).group_by(
                    JOBS.c.queue, JOBS.c.status
                )
            ).all()
        return {(r[0], r[1]): int(r[2]) for r in rows}

    def retry(self, job_id: int, *, session: Session | None = None) -> bool:
        """Run a dead or cancelled job again now, with a fresh set of attempts.

        In ``session``'s transaction when given (an admin's audit row commits with it).
        """
        return self._transition(
            session,
            job_id,
            (JobStatus.DEAD, JobStatus.CANCELLED),
            status=JobStatus.QUEUED.value,
            attempts=0,
            run_at=utcnow(),
            finished_at=None,
            claim_token=None,
        )

    def cancel(self, job_id: int, *, session: Session | None = None) -> bool:
        """Cancel a queued job, or a running one (its worker stops it at the next lease
        extension and its completion is refused). In ``session``'s transaction when given."""
        return self._transition(
            session,
            job_id,
            (JobStatus.QUEUED, JobStatus.RUNNING),
            status=JobStatus.CANCELLED.value,
            claim_token=None,
            lease_until=None,
            finished_at=utcnow(),
        )

    def _transition(
        self,
        session: Session | None,
        job_id: int,
        sources: Sequence[JobStatus],
        **values: Any,
    ) -> bool:
        """An operator's move of one job out of ``sources``; False when it was elsewhere."""
        if session is None:
            with self.database.transaction() as own:
                return self._transition(own, job_id, sources, **values)
        queue = session.execute(
            update(JOBS)
            .where(JOBS.c.id == job_id, JOBS.c.status.in_([s.value for s in sources]))
            .values(values)
            .returning(JOBS.c.queue)
        ).scalar_one_or_none()
        if queue is not None and values["status"] == JobStatus.QUEUED.value:
            _announce(session, queue, self.database.backend)
        return queue is not None

    def purge(self, older_than: timedelta) -> tuple[int, int]:
        """Delete finished jobs and cron fire records older than ``older_than``;
        returns how many of each."""
        cutoff = utcnow() - older_than
        finished = [JobStatus.SUCCEEDED.value, JobStatus.DEAD.value, JobStatus.CANCELLED.value]
        with self.database.transaction() as session:
            jobs = _changed(
                session.execute(
                    JOBS.delete().where(JOBS.c.status.in_(finished), JOBS.c.finished_at < cutoff)
                )
            )
            fires = _changed(session.execute(FIRES.delete().where(FIRES.c.fire_time < cutoff)))
        return jobs, fires


def _changed(result: Any) -> int:
    """Rows an UPDATE or DELETE matched (typed ``Result`` does not declare it)."""
    return int(result.rowcount)


def _clip(error: str | None) -> str | None:
    return error if error is None or len(error) <= MAX_ERROR_CHARS else error[:MAX_ERROR_CHARS]
