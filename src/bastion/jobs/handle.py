"""What ``@app.job`` returns: call it like the function, or enqueue it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session

from bastion.context import Context
from bastion.db.database import ReadOnlySession
from bastion.db.tables import utcnow
from bastion.errors import ReadOnlyViolation
from bastion.jobs import store
from bastion.jobs.spec import JobSpec

R = TypeVar("R")


class Job(Generic[R]):
    """A declared job.

    ``send_welcome.enqueue(ctx, user_id=7)`` inside a mutation writes the job in the
    mutation's transaction: it exists if and only if the mutation commits.

    Calling the handle runs the function directly (unit tests).
    """

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self.__doc__ = spec.fn.__doc__
        self.__name__ = spec.name

    def __call__(self, *args: Any, **kwargs: Any) -> R:
        result: R = self.spec.fn(*args, **kwargs)
        return result

    def __repr__(self) -> str:
        return f"<Job {self.spec.handler} queue={self.spec.queue}>"

    def enqueue(self, target: Context | Session, /, **args: Any) -> int:
        """Enqueue now, in ``target``'s transaction (a mutation's context or a session)."""
        return self.options().enqueue(target, **args)

    def options(
        self,
        *,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        dedup_key: str | None = None,
        priority: int | None = None,
    ) -> BoundJob:
        """Enqueue with options: ``job.options(delay=60, dedup_key="o-7").enqueue(ctx, ...)``.

        Args:
            delay: Run no sooner than this many seconds (or this timedelta) from now.
            run_at: Run no sooner than this time (aware datetime).
            dedup_key: At most one job ever has this key; a second enqueue returns the
                first job's id and inserts nothing.
            priority: Higher runs first within a queue (default: the job's own).
        """
        if delay is not None and run_at is not None:
            raise ValueError("give delay or run_at, not both")
        if run_at is not None and run_at.tzinfo is None:
            raise ValueError("run_at must be timezone-aware")
        if delay is not None:
            seconds = delay.total_seconds() if isinstance(delay, timedelta) else delay
            run_at = utcnow() + timedelta(seconds=seconds)
        return BoundJob(self.spec, run_at, dedup_key, priority)


@dataclass(frozen=True, slots=True)
class BoundJob:
    spec: JobSpec
    run_at: datetime | None
    dedup_key: str | None
    priority: int | None

    def enqueue(self, target: Context | Session, /, **args: Any) -> int:
        session, request_id = _session_of(target, self.spec.name)
        return store.enqueue(
            session,
            self.spec,
            args,
            run_at=self.run_at,
            priority=self.priority,
            dedup_key=self.dedup_key,
            request_id=request_id,
        )


def _session_of(target: Context | Session, name: str) -> tuple[Session, str | None]:
    if isinstance(target, Context):
        if target.db is None:
            raise RuntimeError(
                f"cannot enqueue job {name} from action {target.function}: enqueue from a "
                "mutation (its transaction), or use runtime.jobs.enqueue"
            )
        session, request_id = target.db, target.request_id or None
    else:
        session, request_id = target, None
    if isinstance(session, ReadOnlySession):
        raise ReadOnlyViolation(
            detail=f"cannot enqueue job {name} from a query: queries are read-only; use a mutation"
        )
    return session, request_id
