"""``runtime.jobs``: enqueue from anywhere, build workers, inspect and operate on jobs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import anyio.to_thread
from opentelemetry.trace import Tracer
from sqlalchemy.orm import Session

from bastion.db.database import Database
from bastion.jobs.handle import Job
from bastion.jobs.spec import JobRegistry
from bastion.jobs.store import ENQUEUED, ENQUEUED_COUNTS, JobStore
from bastion.jobs.worker import Worker
from bastion.observability.metrics import Metrics
from bastion.settings.sections import Settings


class Jobs:
    """The jobs of one runtime.

    Enqueueing commits wake this process's workers at once (and, on PostgreSQL,
    every process's through NOTIFY); other processes on SQLite poll.
    """

    def __init__(
        self,
        database: Database,
        registry: JobRegistry,
        settings: Settings,
        services: Any = None,
        *,
        tracer: Tracer | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.database = database
        self.registry = registry
        self.settings = settings
        self.services = services
        self.tracer = tracer
        self.metrics = metrics
        self.store = JobStore(database)
        self._listeners: list[Callable[[str], None]] = []
        database.on_commit(self._committed)

    def _committed(self, session: Session) -> None:
        counts: dict[tuple[str, str], int] = session.info.pop(ENQUEUED_COUNTS, None) or {}
        if self.metrics is not None:
            for (queue, name), count in counts.items():
                self.metrics.job_enqueued(queue, name, count)
        queues = session.info.pop(ENQUEUED, None)
        if not queues:
            return
        for listener in list(self._listeners):
            for queue in queues:
                listener(queue)

    def listen(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call ``callback(queue)`` after each commit that enqueued on ``queue``."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    async def enqueue(
        self,
        job: Job[Any],
        /,
        *,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        dedup_key: str | None = None,
        priority: int | None = None,
        **args: Any,
    ) -> int:
        """Enqueue outside any mutation, in a transaction of its own."""
        bound = job.options(delay=delay, run_at=run_at, dedup_key=dedup_key, priority=priority)

        def write() -> int:
            with self.database.transaction() as session:
                return bound.enqueue(session, **args)

        return await anyio.to_thread.run_sync(write)

    def worker(
        self, queues: Sequence[str] | None = None, *, concurrency: int | None = None
    ) -> Worker:
        """A worker for ``queues`` (all by default); run it with ``await worker.run()``."""
        url = None
        if self.database.backend == "postgresql":
            url = self.database.url.set(drivername="postgresql").render_as_string(
                hide_password=False
            )
        return Worker(
            self.store,
            self.registry,
            self.settings,
            services=self.services,
            queues=queues,
            concurrency=concurrency,
            listen=self.listen,
            postgres_listen_url=url,
            tracer=self.tracer,
            metrics=self.metrics,
        )
