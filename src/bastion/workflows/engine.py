"""Running a workflow: replay checkpoints, run the next steps, compensate on failure.

A workflow function is an ``async def`` taking a :class:`WorkflowRun` (``wf``) and its
arguments. Each ``await wf.step(...)`` is numbered by call order. On every (re)run the
function starts from the top; steps with a checkpoint return their stored output
without running again, so the first incomplete step is where work resumes.

- A plain ``def`` step runs in a transaction that also writes its checkpoint: its
  database effects happen exactly once.
- An ``async def`` step (an action) runs at least once: retried by its policy, and
  again if the process dies before the checkpoint is written. It gets a stable
  ``ctx.idempotency_key`` to pass to peers, so a repeat is harmless for them.
- When a step fails for good, the ``compensate=`` functions of completed steps run in
  reverse order, each checkpointed too (a crash mid-compensation resumes it).
"""

from __future__ import annotations

import contextlib
import inspect
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio
import anyio.to_thread
from opentelemetry.trace import NoOpTracer, Tracer
from pydantic_core import to_jsonable_python
from sqlalchemy import exc as sa_exc
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bastion.auth.principal import Principal
from bastion.context import Context
from bastion.db.database import Database, is_unavailable_error
from bastion.db.tables import utcnow
from bastion.errors import BastionError
from bastion.jobs import Retry
from bastion.jobs.handle import Job
from bastion.jobs.worker import RetryLater
from bastion.observability.logs import get_logger
from bastion.observability.metrics import Metrics
from bastion.observability.tracing import record_failure
from bastion.settings.sections import Settings
from bastion.workflows.spec import WorkflowSpec
from bastion.workflows.tables import StepRow, WorkflowRow

#: Compensation checkpoints sit after every possible step position.
COMPENSATION_OFFSET = 1_000_000
TERMINAL = frozenset({"succeeded", "failed", "compensated"})


class StepFailed(Exception):
    """A step failed for good: retries spent, or an error no retry can fix."""

    def __init__(self, step: str, error: BaseException) -> None:
        super().__init__(f"step {step} failed: {error}")
        self.step = step
        self.error = error


class WorkflowDiverged(Exception):
    """The code no longer calls the steps its checkpoints recorded (a deploy changed
    the order): resuming could repeat or skip effects, so the run stops for a human."""


class _ReplayEnd(Exception):
    """Replay reached the first step without a checkpoint (resuming a compensation)."""


class _Suspend(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"sleeping {seconds:.3f}s")
        self.seconds = seconds


@dataclass
class _Done:
    position: int
    name: str
    output: Any
    compensate: Callable[..., Any] | None


class WorkflowRun:
    """What a workflow function gets as ``wf``: its id, and the durable operations.

    Attributes:
        id: The workflow's id (also its idempotency key).
        settings: The validated settings.
        services: The runtime.
        log: A logger bound to the workflow id.
    """

    def __init__(
        self,
        row: WorkflowRow,
        checkpoints: Mapping[int, StepRow],
        *,
        database: Database,
        settings: Settings,
        services: Any,
        default_retry: Retry,
        tracer: Tracer | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.id = row.id
        self.name = row.name
        self.settings = settings
        self.services = services
        self.log = get_logger("bastion.workflows", workflow_id=row.id, workflow=row.name)
        self.user = Principal(row.owner) if row.owner else None
        self._row = row
        self._database = database
        self._checkpoints = dict(checkpoints)
        self._retry = default_retry
        self._tracer = tracer or NoOpTracer()
        self._metrics = metrics
        self._position = 0
        self.completed: list[_Done] = []
        #: Resuming a compensation: replay checkpoints only, to learn what to undo.
        self.replay_only = False

    # -- steps -------------------------------------------------------------------

    async def step(
        self,
        fn: Callable[..., Any],
        /,
        *,
        name: str | None = None,
        compensate: Callable[..., Any] | None = None,
        retry: Retry | None = None,
        **args: Any,
    ) -> Any:
        """Run ``fn(ctx, **args)`` once (its stored output on replays) and return its
        output as JSON-compatible data.

        ``compensate(ctx, output)`` undoes it if a later step fails for good.
        """
        position = self._next()
        step_name = name or fn.__name__
        recorded = self._recorded(position, step_name)
        if recorded is not None:
            self.completed.append(_Done(position, step_name, recorded.output, compensate))
            return recorded.output
        if self.replay_only:
            raise _ReplayEnd()
        with self._span(position, step_name):
            try:
                if _is_async(fn):
                    output = await self._action(position, step_name, fn, args, retry or self._retry)
                else:
                    output = await self._mutation(position, step_name, fn, args)
            except StepFailed:
                self._count(step_name, "failed")
                raise
        self._count(step_name, "succeeded")
        self.completed.append(_Done(position, step_name, output, compensate))
        return output

    async def sleep(self, delay: float | timedelta, *, name: str = "sleep") -> None:
        """Wait durably: the run ends here and resumes after ``delay``, even across
        restarts (the wake-up time is a checkpoint)."""
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
        position = self._next()
        recorded = self._recorded(position, name, finished_only=False)
        now = utcnow()
        if recorded is None:
            wake_at = now + timedelta(seconds=seconds)
            await anyio.to_thread.run_sync(self._write_sleep, position, name, wake_at)
            raise _Suspend(seconds)
        if recorded.status == "succeeded":
            return
        assert recorded.wake_at is not None
        if recorded.wake_at > now:
            raise _Suspend((recorded.wake_at - now).total_seconds())
        await anyio.to_thread.run_sync(self._finish_sleep, position)

    async def enqueue(self, job: Job[Any], /, **args: Any) -> int:
        """Enqueue a child job exactly once (its id is a checkpoint); returns the job id."""
        position = self._position  # the step about to be taken
        dedup = f"workflow:{self.id}:{position}"

        def enqueue_child(ctx: Context) -> int:
            return job.options(dedup_key=dedup).enqueue(ctx, **args)

        job_id: int = await self.step(enqueue_child, name=f"enqueue:{job.spec.name}")
        return job_id

    async def child(self, workflow: Any, /, **args: Any) -> Any:
        """Start a child workflow (id ``<this id>/<position>``) once and wait for it;
        returns its result, or fails this step with its error."""
        position = self._position
        child_id = f"{self.id}/{position}"

        def start_child(ctx: Context) -> str:
            started: str = workflow.start(ctx, id=child_id, parent_id=self.id, **args)
            return started

        await self.step(start_child, name=f"start:{workflow.spec.name}")
        row = await anyio.to_thread.run_sync(self._load_child, child_id)
        if row.status == "succeeded":
            return row.result
        if row.status in TERMINAL:
            raise StepFailed(f"child {child_id}", BastionError(row.error_code or "internal_error"))
        raise _Suspend(0.5)

    # -- internals ---------------------------------------------------------------

    def _count(self, step: str, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.workflow_step(self.name, step, outcome)

    @contextlib.contextmanager
    def _span(self, position: int, name: str) -> Iterator[None]:
        """A span around one step's run (its retries included) or one compensation."""
        with self._tracer.start_as_current_span(
            f"step {name}",
            attributes={
                "bastion.workflow.id": self.id,
                "bastion.workflow.name": self.name,
                "bastion.workflow.step": name,
                "bastion.workflow.position": position,
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield
            except Exception as error:
                record_failure(span, error.error if isinstance(error, StepFailed) else error)
                raise

    def _next(self) -> int:
        position = self._position
        self._position += 1
        return position

    def _recorded(self, position: int, name: str, *, finished_only: bool = True) -> StepRow | None:
        recorded = self._checkpoints.get(position)
        if recorded is None:
            return None
        if recorded.name != name:
            raise WorkflowDiverged(
                f"step {position} was {recorded.name!r} when checkpointed, the code now "
                f"calls {name!r}"
            )
        if finished_only and recorded.status != "succeeded":
            return None
        return recorded

    def context(self, db: Session | None, position: int, name: str) -> Context:
        return Context(
            db=db,
            user=self.user,
            locale="en",
            request_id=self._row.request_id or f"workflow-{self.id}",
            log=self.log.bind(step=name, position=position),
            settings=self.settings,
            services=self.services,
            function=name,
            idempotency_key=f"{self.id}:{position}",
        )

    async def _mutation(
        self, position: int, name: str, fn: Callable[..., Any], args: Mapping[str, Any]
    ) -> Any:
        def run() -> Any:
            with self._database.transaction() as session:
                output = to_jsonable_python(fn(self.context(session, position, name), **args))
                self._record(session, position, name, "mutation", output=output)
            return output

        try:
            return await anyio.to_thread.run_sync(run)
        except sa_exc.IntegrityError:
            # Another runner checkpointed this step first: its effects stand, ours rolled back.
            existing = await anyio.to_thread.run_sync(self._load_step, position)
            if existing is not None and existing.status == "succeeded":
                return existing.output
            raise
        except sa_exc.DBAPIError as error:
            if is_unavailable_error(error):
                raise  # infrastructure: the run is retried and resumes here
            raise StepFailed(name, error) from error
        except Exception as error:
            raise StepFailed(name, error) from error

    async def _action(
        self,
        position: int,
        name: str,
        fn: Callable[..., Any],
        args: Mapping[str, Any],
        retry: Retry,
    ) -> Any:
        attempt = 0
        while True:
            attempt += 1
            try:
                output = to_jsonable_python(await fn(self.context(None, position, name), **args))
                break
            except Exception as error:
                permanent = isinstance(error, retry.give_up_on) or (
                    isinstance(error, BastionError) and self._is_client_error(error)
                )
                if permanent or attempt >= retry.max_attempts:
                    raise StepFailed(name, error) from error
                delay = retry.delay(attempt)
                self._count(name, "retried")
                self.log.warning(
                    "workflow step failed; will retry",
                    step=name,
                    attempt=attempt,
                    error=_describe(error),
                    retry_in_s=round(delay, 3),
                )
                await anyio.sleep(delay)
        await anyio.to_thread.run_sync(self._checkpoint, position, name, "action", output, attempt)
        return output

    def _checkpoint(self, position: int, name: str, kind: str, output: Any, attempts: int) -> None:
        try:
            with self._database.transaction() as session:
                self._record(session, position, name, kind, output=output, attempts=attempts)
        except sa_exc.IntegrityError:
            pass  # checkpointed by a concurrent runner: the first output stands

    def _write_sleep(self, position: int, name: str, wake_at: datetime) -> None:
        with self._database.transaction() as session:
            self._record(session, position, name, "sleep", status="sleeping", wake_at=wake_at)

    def _record(
        self,
        session: Session,
        position: int,
        name: str,
        kind: str,
        *,
        output: Any = None,
        attempts: int = 1,
        status: str = "succeeded",
        wake_at: datetime | None = None,
    ) -> None:
        """Write a step's checkpoint (its primary key admits one) and touch the run."""
        session.add(
            StepRow(
                workflow_id=self.id,
                position=position,
                name=name,
                kind=kind,
                status=status,
                output=output,
                attempts=attempts,
                wake_at=wake_at,
                finished_at=utcnow() if status == "succeeded" else None,
            )
        )
        _touch(session, self.id, status="sleeping" if status == "sleeping" else None)

    def _finish_sleep(self, position: int) -> None:
        with self._database.transaction() as session:
            session.execute(
                update(StepRow)
                .where(StepRow.workflow_id == self.id, StepRow.position == position)
                .values(status="succeeded", finished_at=utcnow())
            )
            _touch(session, self.id, status="running")

    def _load_step(self, position: int) -> StepRow | None:
        with self._database.read_transaction() as session:
            return session.get(StepRow, (self.id, position))

    def _load_child(self, child_id: str) -> WorkflowRow:
        with self._database.read_transaction() as session:
            row = session.get(WorkflowRow, child_id)
        if row is None:
            raise RuntimeError(f"child workflow {child_id} was not started")
        return row

    def _is_client_error(self, error: BastionError) -> bool:
        """A 4xx error (``payment_declined``) is an answer, not a failure: no retry helps.
        The status comes from the error, else from the app's catalog for its code."""
        status = error.status_override or type(error).status
        if status is None:
            catalog = getattr(getattr(self.services, "app", None), "errors", None)
            status = catalog.status_of(error.error_code) if catalog is not None else None
        return status is not None and status < 500

    # -- compensation ----------------------------------------------------------------

    async def compensate(self) -> list[str]:
        """Undo completed steps in reverse order; returns the names compensated now."""
        undone = []
        for done in reversed(self.completed):
            if done.compensate is None:
                continue
            # Numbered backwards, so the timeline lists compensations in the order they ran.
            position = 2 * COMPENSATION_OFFSET - 1 - done.position
            name = f"compensate:{done.name}"
            if (await anyio.to_thread.run_sync(self._load_step, position)) is not None:
                continue
            fn = done.compensate
            with self._span(position, name):
                if _is_async(fn):
                    await self._action(
                        position, name, _bind_output(fn, done.output), {}, self._retry
                    )
                else:
                    await self._mutation(position, name, _bind_output(fn, done.output), {})
            self._count(done.name, "compensated")
            undone.append(name)
        return undone


def _bind_output(fn: Callable[..., Any], output: Any) -> Callable[..., Any]:
    if _is_async(fn):

        async def undo_async(ctx: Context) -> Any:
            return await fn(ctx, output)

        return undo_async

    def undo(ctx: Context) -> Any:
        return fn(ctx, output)

    return undo


def _touch(session: Session, workflow_id: str, *, status: str | None = None) -> None:
    values: dict[str, Any] = {"updated_at": utcnow()}
    if status is not None:
        values["status"] = status
    session.execute(update(WorkflowRow).where(WorkflowRow.id == workflow_id).values(values))


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn)


def _describe(error: BaseException) -> str:
    return "".join(traceback.format_exception_only(error)).strip()


async def execute(
    spec: WorkflowSpec,
    workflow_id: str,
    *,
    database: Database,
    settings: Settings,
    services: Any,
    tracer: Tracer | None = None,
    metrics: Metrics | None = None,
) -> tuple[WorkflowRow, BaseException | None]:
    """Run (or resume) one workflow to its end or its next sleep.

    Returns the row as it ended and, after a failure, the error that caused it (so an
    inline run can raise it with its parameters). Raises :class:`RetryLater` when the
    workflow sleeps (the runner job comes back then), and lets infrastructure errors
    through (the runner job retries, resuming from the checkpoints).
    """
    row, checkpoints = await anyio.to_thread.run_sync(_load, database, workflow_id)
    if row.status in TERMINAL:
        return row, None
    run = WorkflowRun(
        row,
        checkpoints,
        database=database,
        settings=settings,
        services=services,
        default_retry=spec.step_retry,
        tracer=tracer,
        metrics=metrics,
    )
    if row.status == "compensating":
        # A crash (or a failed compensation) interrupted the undoing: replay the
        # checkpoints to learn which steps completed, then compensate what is left.
        run.replay_only = True
        # The replay ends at the first step without a checkpoint (or its old failure).
        with contextlib.suppress(Exception):
            await spec.fn(run, **spec.arguments.load(row.args))
        return await _fail(run, database, row, None)
    await anyio.to_thread.run_sync(_set_status, database, workflow_id, "running")
    started = time.perf_counter()
    try:
        result = await spec.fn(run, **spec.arguments.load(row.args))
    except _Suspend as sleeping:
        raise RetryLater(sleeping.seconds) from None
    except WorkflowDiverged:
        raise
    except sa_exc.DBAPIError as error:
        if is_unavailable_error(error):
            raise
        return await _fail(run, database, row, error)
    except Exception as error:
        return await _fail(run, database, row, error)
    output = to_jsonable_python(result)
    run.log.info("workflow succeeded", duration_ms=round((time.perf_counter() - started) * 1000, 2))
    finished = await anyio.to_thread.run_sync(_finish, database, workflow_id, "succeeded", output)
    return finished, None


async def _fail(
    run: WorkflowRun, database: Database, row: WorkflowRow, error: BaseException | None
) -> tuple[WorkflowRow, BaseException | None]:
    cause = error.error if isinstance(error, StepFailed) else error
    if error is not None:
        run.log.warning("workflow failed; compensating", error=_describe(error))
        code = cause.error_code if isinstance(cause, BastionError) else "internal_error"
        await anyio.to_thread.run_sync(_record_failure, database, row.id, _describe(error), code)
    try:
        undone = await run.compensate()
    except StepFailed as failed:
        # Left "compensating": the runner job tries again later (with backoff), and an
        # inline caller still gets the original error.
        run.log.error("workflow compensation failed; will retry", error=_describe(failed))
        current = await anyio.to_thread.run_sync(_load, database, row.id)
        return current[0], cause
    status = "compensated" if any(d.compensate for d in run.completed) else "failed"
    run.log.info("workflow ended", status=status, compensated=undone)
    finished = await anyio.to_thread.run_sync(_finish, database, row.id, status, None)
    return finished, cause


def _load(database: Database, workflow_id: str) -> tuple[WorkflowRow, dict[int, StepRow]]:
    with database.read_transaction() as session:
        row = session.get(WorkflowRow, workflow_id)
        if row is None:
            raise LookupError(f"no workflow {workflow_id!r}")
        steps = session.scalars(select(StepRow).where(StepRow.workflow_id == workflow_id))
        return row, {s.position: s for s in steps}


def _set_status(database: Database, workflow_id: str, status: str) -> None:
    with database.transaction() as session:
        _touch(session, workflow_id, status=status)


def _record_failure(database: Database, workflow_id: str, error: str, code: str) -> None:
    with database.transaction() as session:
        session.execute(
            update(WorkflowRow)
            .where(WorkflowRow.id == workflow_id)
            .values(status="compensating", error=error, error_code=code, updated_at=utcnow())
        )


def _finish(database: Database, workflow_id: str, status: str, result: Any) -> WorkflowRow:
    with database.transaction() as session:
        values: dict[str, Any] = {"status": status, "updated_at": utcnow(), "finished_at": utcnow()}
        if status == "succeeded":
            values["result"] = result
        session.execute(update(WorkflowRow).where(WorkflowRow.id == workflow_id).values(values))
        row = session.get(WorkflowRow, workflow_id)
        assert row is not None
        return row
