"""The worker: claims jobs in batches, runs them, keeps their leases, settles them.

One worker is one asyncio task group in one process:

- the *claimer* takes up to ``batch_size`` due jobs per round trip whenever a slot
  is free, then sleeps until a wake-up (an in-process commit, a PostgreSQL NOTIFY)
  or the poll interval;
- the *heartbeat* extends the leases of running jobs (and stores their progress);
  a job whose lease was lost (cancelled, or claimed again after a stall) is stopped;
- the *settler* writes the outcomes of finished async jobs, many per transaction;
- the *reaper* gives back jobs of dead workers once their lease runs out.

Sync (transactional) jobs settle inside their own transaction instead, so their
writes and their completion commit together.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import socket
import time
import traceback
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import anyio
import anyio.to_thread
import structlog
from anyio.abc import TaskGroup, TaskStatus
from opentelemetry.trace import NoOpTracer, Span, SpanKind, Status, StatusCode, Tracer
from pydantic import ValidationError
from pydantic_core import to_jsonable_python
from sqlalchemy import exc as sa_exc

from bastion.context import Context, JobInfo
from bastion.db.tables import utcnow
from bastion.jobs.cron import Scheduler
from bastion.jobs.spec import JobRegistry, JobSpec
from bastion.jobs.store import Claimed, JobStatus, JobStore, Outcome
from bastion.observability.logs import get_logger
from bastion.observability.metrics import Metrics
from bastion.observability.tracing import (
    bound_trace_ids,
    context_from_traceparent,
    record_failure,
)
from bastion.settings.sections import JobsSection, Settings


class RetryLater(Exception):
    """Raise from a job to run it again after ``delay_s`` without counting an attempt
    (the job's ``Retry-After``: a rate-limited peer, a resource not ready yet)."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(f"retry in {delay_s}s")
        self.delay_s = max(0.0, delay_s)


class JobTimedOut(Exception):
    """An attempt ran past its job's timeout."""


class _LeaseLost(Exception):
    """The job was cancelled or claimed by another worker while this one ran it."""


@dataclass(eq=False)
class _Running:
    job: Claimed
    spec: JobSpec
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    progress: Any = None
    progress_dirty: bool = False
    lost: bool = False
    released: bool = False


class Worker:
    """Runs the jobs of some queues until :meth:`stop`.

    Args:
        store: The job tables.
        registry: The app's jobs; only their handlers are claimed.
        settings: Everything (jobs section for tuning; contexts get the whole).
        services: The runtime, reachable as ``ctx.services`` in job handlers.
        queues: Queues to serve; all declared queues when omitted.
        concurrency: Jobs at once in this process (default ``jobs.concurrency``).
        wakeups: Called with a callback to register for "a job was enqueued" signals.
        tracer: Starts a span per run, child of the span that enqueued the job.
        metrics: Counts runs by outcome and times them.
    """

    def __init__(
        self,
        store: JobStore,
        registry: JobRegistry,
        settings: Settings,
        *,
        services: Any = None,
        queues: Sequence[str] | None = None,
        concurrency: int | None = None,
        listen: Callable[[Callable[[str], None]], Callable[[], None]] | None = None,
        postgres_listen_url: str | None = None,
        tracer: Tracer | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.tracer = tracer or NoOpTracer()
        self.registry = registry
        self.settings = settings
        self.config: JobsSection = settings.jobs
        self.services = services
        self.queues = list(queues) if queues else registry.queue_names()
        unknown = sorted(set(self.queues) - set(registry.queue_names()))
        if unknown:
            raise ValueError(f"no job is declared on queue(s) {', '.join(unknown)}")
        self.handlers = {q: registry.handlers([q]) for q in self.queues}
        self.limits = {q: registry.queues[q] for q in self.queues if q in registry.queues}
        self.concurrency = concurrency or self.config.concurrency
        self.name = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._listen = listen
        self._postgres_listen_url = postgres_listen_url
        self._log = get_logger("bastion.jobs", worker=self.name)
        self._running: dict[int, _Running] = {}
        self._outcomes: list[Outcome] = []
        self._outcome_ready = anyio.Event()
        self._wake = anyio.Event()
        self._slot_free = anyio.Event()
        self._stopping = False
        self._stopped = anyio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.claimed = 0
        self.settled = 0

    # -- lifecycle -----------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until :meth:`stop`; then finish running jobs within the grace period
        and give back the rest."""
        self._loop = asyncio.get_running_loop()
        unlisten = self._listen(self._wake_from_thread) if self._listen else None
        self._log.info("worker started", queues=self.queues, concurrency=self.concurrency)
        pool = self.settings.database.pool_size
        if pool < self.concurrency + 2:
            # Sync jobs each hold a connection; the overflow opens and closes one per job
            # (the jobs benchmark measured 2.4 ms of PostgreSQL CPU per job for it).
            self._log.warning(
                "database pool smaller than the worker's concurrency",
                pool_size=pool,
                concurrency=self.concurrency,
                advice="set [database] pool_size to at least concurrency + 2",
            )
        try:
            async with anyio.create_task_group() as background:
                background.start_soon(self._heartbeat)
                background.start_soon(self._settler)
                background.start_soon(self._reaper)
                if self._postgres_listen_url:
                    background.start_soon(self._pg_listener)
                if self.registry.schedules:
                    background.start_soon(self._cron)
                async with anyio.create_task_group() as jobs:
                    task_status.started()
                    await self._claimer(jobs)
                    await self._drain()
                await self._flush()
                background.cancel_scope.cancel()
        finally:
            if unlisten is not None:
                unlisten()
            self._stopped.set()
            self._log.info("worker stopped", claimed=self.claimed, settled=self.settled)

    def stop(self) -> None:
        """Stop claiming; :meth:`run` returns once running jobs are done or given back."""
        self._stopping = True
        self._wake.set()
        self._slot_free.set()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def wake(self, _queue: str = "") -> None:
        """Look for jobs now (call from the worker's event loop)."""
        self._wake.set()

    def _wake_from_thread(self, queue: str) -> None:
        # Called by whichever thread committed; never blocks it.
        if self._loop is None or (queue and queue not in self.handlers):
            return
        self._loop.call_soon_threadsafe(lambda: self._wake.set())

    # -- claiming --------------------------------------------------------------

    async def _claimer(self, jobs: TaskGroup) -> None:
        failures = 0
        while not self._stopping:
            room = self.concurrency - len(self._running)
            if room <= 0:
                self._slot_free = anyio.Event()
                await self._slot_free.wait()
                continue
            wanted = min(room, self.config.batch_size)
            self._wake = anyio.Event()
            try:
                claimed = await anyio.to_thread.run_sync(self._claim, wanted)
                failures = 0
            except sa_exc.DBAPIError as error:
                failures += 1
                delay = min(30.0, 0.5 * 2 ** min(failures, 6)) * random.uniform(0.5, 1)
                self._log.warning("claim failed", error=str(error.orig), retry_in_s=round(delay, 2))
                await self._sleep_or_wake(delay)
                continue
            for job in claimed:
                self._start(jobs, job)
            if len(claimed) < wanted:
                await self._sleep_or_wake(self.config.poll_interval_s)

    def _claim(self, wanted: int) -> list[Claimed]:
        return self.store.claim(
            self.handlers,
            wanted,
            worker=self.name,
            lease_s=self.config.lease_s,
            limits=self.limits,
        )

    async def _sleep_or_wake(self, seconds: float) -> None:
        with anyio.move_on_after(seconds):
            await self._wake.wait()

    def _start(self, jobs: TaskGroup, job: Claimed) -> None:
        spec = self.registry.by_handler(job.handler)
        if spec is None:  # claimed only by handler name, so this is a programming error
            raise RuntimeError(f"claimed a job with unknown handler {job.handler}")
        running = _Running(job, spec)
        self._running[job.id] = running
        self.claimed += 1
        jobs.start_soon(self._execute, running)

    # -- running ---------------------------------------------------------------------

    async def _execute(self, running: _Running) -> None:
        job, spec = running.job, running.spec
        # The parent is the span that enqueued the job (a request's mutation, say), so one
        # trace tells the whole story; every attempt is a sibling under it.
        with (
            self.tracer.start_as_current_span(
                spec.name,
                context=context_from_traceparent(job.trace_context),
                kind=SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "bastion",
                    "messaging.operation.type": "process",
                    "messaging.destination.name": job.queue,
                    "messaging.message.id": str(job.id),
                    "bastion.job.handler": spec.handler,
                    "bastion.job.attempt": job.attempt,
                },
                record_exception=False,
                set_status_on_exception=False,
            ) as span,
            bound_trace_ids(span),
            # Every log line of the run carries the request id that enqueued the job.
            structlog.contextvars.bound_contextvars(request_id=job.request_id or f"job-{job.id}"),
        ):
            await self._execute_in(running, span)

    async def _execute_in(self, running: _Running, span: Span) -> None:
        job, spec = running.job, running.spec
        log = self._log.bind(job_id=job.id, job=spec.handler, attempt=job.attempt)
        started = time.perf_counter()
        outcome: Outcome | None = None
        settled_in_transaction = False
        try:
            with running.scope:
                outcome = await self._attempt(running, log)
            settled_in_transaction = outcome is None and not running.scope.cancelled_caught
            if running.scope.cancelled_caught and running.released and not running.lost:
                # Sync jobs were released by _drain already, in one batch.
                outcome = None if spec.transactional else Outcome(job.id, job.token, "released")
        except Exception as error:
            record_failure(span, error)
            outcome = self._failure(running, error, log)
        finally:
            # A run that lost its lease may end after this worker claimed the job again:
            # the entry is then the new run's, which must stay.
            if self._running.get(job.id) is running:
                del self._running[job.id]
            self._slot_free.set()
        if outcome is not None and outcome.error is not None and span.is_recording():
            span.set_status(Status(StatusCode.ERROR, outcome.error[:200]))
        seconds = time.perf_counter() - started
        if self.metrics is not None:
            counted = "succeeded" if settled_in_transaction else _counted_outcome(outcome)
            if counted is not None:
                self.metrics.job_run(job.queue, spec.name, counted, seconds)
        duration_ms = round(seconds * 1000, 2)
        if outcome is None:
            log.debug("job settled in its transaction", duration_ms=duration_ms)
            return
        if outcome.status == JobStatus.SUCCEEDED:
            log.debug("job succeeded", duration_ms=duration_ms)
        self._outcomes.append(outcome)
        self._outcome_ready.set()

    async def _attempt(self, running: _Running, log: Any) -> Outcome | None:
        job, spec = running.job, running.spec
        try:
            args = spec.arguments.load(job.args)
        except ValidationError as error:
            log.error("job arguments no longer valid", error=str(error))
            return Outcome(
                job.id, job.token, JobStatus.DEAD.value, error=f"invalid arguments: {error}"
            )

        def report(progress: Any) -> None:
            running.progress = to_jsonable_python(progress)
            running.progress_dirty = True

        info = JobInfo(job.id, job.queue, job.attempt, job.max_attempts, report)
        if spec.transactional:
            deadline = time.monotonic() + job.timeout_s if job.timeout_s else math.inf
            # A thread cannot be stopped from outside: a sync job that overruns its
            # timeout is rolled back when it returns (see _run_sync).
            # Abandoned on cancel (shutdown, lost lease): its commit is fenced anyway.
            await anyio.to_thread.run_sync(
                self._run_sync, running, args, info, log, deadline, abandon_on_cancel=True
            )
            return None
        ctx = self._context(None, job, spec, info, log)
        with anyio.fail_after(job.timeout_s) if job.timeout_s else nullcontext():
            result = await spec.fn(ctx, **args)
        return Outcome(job.id, job.token, JobStatus.SUCCEEDED.value, to_jsonable_python(result))

    def _run_sync(
        self, running: _Running, args: dict[str, Any], info: JobInfo, log: Any, deadline: float
    ) -> None:
        job, spec = running.job, running.spec
        with self.store.database.transaction() as session:
            result = spec.fn(self._context(session, job, spec, info, log), **args)
            if time.monotonic() > deadline:
                raise JobTimedOut(f"timed out after {job.timeout_s}s")
            done = Outcome(job.id, job.token, JobStatus.SUCCEEDED.value, to_jsonable_python(result))
            if self.store.settle_in(session, [done]):
                raise _LeaseLost()
        self.settled += 1

    def _context(self, db: Any, job: Claimed, spec: JobSpec, info: JobInfo, log: Any) -> Context:
        return Context(
            db=db,
            user=None,
            locale="en",
            request_id=job.request_id or f"job-{job.id}",
            log=log,
            settings=self.settings,
            services=self.services,
            function=spec.name,
            job=info,
        )

    def _failure(self, running: _Running, error: Exception, log: Any) -> Outcome | None:
        job, spec = running.job, running.spec
        if isinstance(error, _LeaseLost) or running.lost:
            log.warning("job lost its lease while running; another worker owns it now")
            return None
        if isinstance(error, RetryLater):
            log.info("job asked to run later", delay_s=error.delay_s)
            return Outcome(
                job.id,
                job.token,
                "released",
                run_at=utcnow() + timedelta(seconds=error.delay_s),
            )
        if isinstance(error, TimeoutError) and not isinstance(error, JobTimedOut):
            error = JobTimedOut(f"timed out after {job.timeout_s}s")
        text = "".join(traceback.format_exception_only(error)).strip()
        permanent = isinstance(error, spec.retry.give_up_on)
        if permanent or job.attempt >= job.max_attempts:
            log.error("job dead", error=text, permanent=permanent)
            return Outcome(job.id, job.token, JobStatus.DEAD.value, error=text)
        delay = spec.retry.delay(job.attempt)
        log.warning("job failed; will retry", error=text, retry_in_s=round(delay, 3))
        return Outcome(
            job.id,
            job.token,
            JobStatus.QUEUED.value,
            error=text,
            run_at=utcnow() + timedelta(seconds=delay),
        )

    # -- settling, leases, reaping -------------------------------------------------------

    async def _settler(self) -> None:
        while True:
            await self._outcome_ready.wait()
            self._outcome_ready = anyio.Event()
            await self._flush()

    async def _flush(self) -> None:
        while self._outcomes:
            batch, self._outcomes = self._outcomes, []
            try:
                lost = await anyio.to_thread.run_sync(self.store.settle, batch)
            except sa_exc.DBAPIError as error:
                # The leases still protect these jobs: retried by their next claimer.
                self._log.error("settling failed", error=str(error.orig), jobs=len(batch))
                return
            self.settled += len(batch) - len(lost)
            if lost:
                self._log.warning("outcomes refused: leases lost", job_ids=sorted(lost))

    async def _heartbeat(self) -> None:
        while True:
            await anyio.sleep(self.config.lease_s / 3)
            held = [(r.job.id, r.job.token) for r in self._running.values() if not r.released]
            if not held:
                continue
            progress = {}
            for running in self._running.values():
                if running.progress_dirty:
                    progress[running.job.id] = running.progress
                    running.progress_dirty = False
            try:
                lost = await anyio.to_thread.run_sync(
                    self.store.extend, held, self.config.lease_s, progress
                )
            except sa_exc.DBAPIError as error:
                self._log.warning("lease extension failed", error=str(error.orig))
                continue
            tokens = dict(held)
            for job_id in lost:
                running_job = self._running.get(job_id)
                # By token: this worker may be running the job again under a new claim.
                if running_job is not None and running_job.job.token == tokens[job_id]:
                    running_job.lost = True
                    running_job.scope.cancel()

    async def _reaper(self) -> None:
        while True:
            await anyio.sleep(self.config.lease_s / 2 * random.uniform(0.8, 1.2))
            try:
                reaped = await anyio.to_thread.run_sync(self.store.reap)
            except sa_exc.DBAPIError as error:
                self._log.warning("reaping failed", error=str(error.orig))
                continue
            if reaped:
                self._log.warning("jobs of lost workers given back", count=reaped)
                self._wake.set()

    async def _cron(self) -> None:
        scheduler = Scheduler(
            self.store.database,
            list(self.registry.schedules.values()),
            grace_s=self.config.cron_grace_s,
        )
        while True:
            try:
                fired = await anyio.to_thread.run_sync(scheduler.tick)
            except sa_exc.DBAPIError as error:
                self._log.warning("cron check failed", error=str(error.orig))
                fired = []
            for name, tick in fired:
                self._log.info("cron fired", schedule=name, tick=tick.isoformat())
            if fired:
                self._wake.set()
            # Right after the next tick (a little jitter spreads the processes' checks).
            await anyio.sleep(min(scheduler.seconds_to_next(), 30.0) + random.uniform(0, 0.05))

    async def _pg_listener(self) -> None:
        import psycopg

        assert self._postgres_listen_url is not None
        failures = 0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._postgres_listen_url, autocommit=True
                ) as connection:
                    await connection.execute("LISTEN bastion_jobs")
                    failures = 0
                    self._wake.set()  # whatever was enqueued while we were not listening
                    async for notice in connection.notifies():
                        if notice.payload in self.handlers:
                            self._wake.set()
            except psycopg.Error as error:
                failures += 1
                self._log.warning("LISTEN connection lost; polling meanwhile", error=str(error))
                await anyio.sleep(min(30.0, 0.5 * 2 ** min(failures, 6)))

    async def _drain(self) -> None:
        """Let running jobs finish within the grace period, then give them back."""
        if not self._running:
            return
        self._log.info("finishing running jobs", running=len(self._running))
        with anyio.move_on_after(self.config.shutdown_grace_s):
            while self._running:
                self._slot_free = anyio.Event()
                await self._slot_free.wait()
        leftover = list(self._running.values())
        if not leftover:
            return
        self._log.warning("grace period over: giving jobs back", count=len(leftover))
        sync_jobs = []
        for running in leftover:
            running.released = True
            if running.spec.transactional:
                sync_jobs.append(Outcome(running.job.id, running.job.token, "released"))
            running.scope.cancel()
        # A sync job's thread keeps running; releasing its lease now fences its commit.
        if sync_jobs:
            await anyio.to_thread.run_sync(self.store.settle, sync_jobs)


def _counted_outcome(outcome: Outcome | None) -> str | None:
    """The ``outcome`` label of a finished run; ``None`` for one not worth counting (its
    lease was lost, or it was given back at shutdown)."""
    if outcome is None:
        return None
    if outcome.status == JobStatus.SUCCEEDED:
        return "succeeded"
    if outcome.status == JobStatus.DEAD:
        return "dead"
    if outcome.status == JobStatus.QUEUED:
        return "failed"
    # Released with a time to run again: the job raised RetryLater.
    return "retried" if outcome.run_at is not None else None
