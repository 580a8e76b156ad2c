"""``runtime.workflows``: run, resume and inspect workflows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import anyio.to_thread
from opentelemetry.trace import Tracer
from sqlalchemy import select

from bastion.context import Context
from bastion.db.database import Database
from bastion.db.tables import utcnow
from bastion.jobs import RetryLater
from bastion.observability.metrics import Metrics
from bastion.settings.sections import Settings
from bastion.workflows.engine import TERMINAL, execute
from bastion.workflows.spec import WorkflowSpec
from bastion.workflows.tables import StepRow, WorkflowRow


@dataclass(frozen=True, slots=True)
class Timeline:
    """A run and its steps in order (compensations last), for status endpoints."""

    workflow: WorkflowRow
    steps: list[StepRow]


class Workflows:
    def __init__(
        self,
        database: Database,
        specs: Mapping[str, WorkflowSpec],
        settings: Settings,
        services: Any = None,
        *,
        tracer: Tracer | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.database = database
        self.specs = specs
        self.settings = settings
        self.services = services
        self.tracer = tracer
        self.metrics = metrics

    async def execute(
        self, spec: WorkflowSpec, workflow_id: str
    ) -> tuple[WorkflowRow, BaseException | None]:
        try:
            return await execute(
                spec,
                workflow_id,
                database=self.database,
                settings=self.settings,
                services=self.services,
                tracer=self.tracer,
                metrics=self.metrics,
            )
        except RetryLater:
            row = await anyio.to_thread.run_sync(self._row, workflow_id)
            return row, None

    async def resume(self, ctx: Context, workflow_id: str, recovering: bool) -> Any:
        """The runner job's body: run or resume ``workflow_id`` (sleeps raise RetryLater)."""
        row = await anyio.to_thread.run_sync(self._row, workflow_id)
        if row.status in TERMINAL:
            return row.status
        spec = self.specs.get(row.name)
        if spec is None:
            raise LookupError(f"workflow {row.name!r} is not declared in this app")
        fresh = utcnow() - row.updated_at < timedelta(seconds=spec.recovery_s)
        if recovering and fresh and row.status != "sleeping":
            # The process that runs it inline is still making progress.
            raise RetryLater(spec.recovery_s)
        finished, _cause = await execute(
            spec,
            workflow_id,
            database=self.database,
            settings=self.settings,
            services=self.services,
            tracer=self.tracer,
            metrics=self.metrics,
        )
        if finished.status == "compensating":
            # A compensation failed for good this time: the job's backoff brings it back.
            raise RuntimeError(f"workflow {workflow_id}: compensation incomplete; retrying")
        return finished.status

    def get(self, workflow_id: str) -> Timeline | None:
        with self.database.read_transaction() as session:
            row = session.get(WorkflowRow, workflow_id)
            if row is None:
                return None
            steps = list(
                session.scalars(
                    select(StepRow)
                    .where(StepRow.workflow_id == workflow_id)
                    .order_by(StepRow.position)
                )
            )
        return Timeline(row, steps)

    def list(self, *, status: str | None = None, limit: int = 50) -> list[WorkflowRow]:
        with self.database.read_transaction() as session:
            query = select(WorkflowRow).order_by(WorkflowRow.created_at.desc()).limit(limit)
            if status:
                query = query.where(WorkflowRow.status == status)
            return list(session.scalars(query))

    def _row(self, workflow_id: str) -> WorkflowRow:
        with self.database.read_transaction() as session:
            row = session.get(WorkflowRow, workflow_id)
        if row is None:
            raise LookupError(f"no workflow {workflow_id!r}")
        return row
