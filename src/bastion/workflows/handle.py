"""What ``@app.workflow`` returns: start it inside a mutation, or run it inline."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, Generic, TypeVar

import anyio.to_thread
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bastion.context import Context
from bastion.db.database import ReadOnlySession
from bastion.db.tables import utcnow
from bastion.errors import BastionError, ReadOnlyViolation
from bastion.jobs.handle import Job
from bastion.observability.tracing import current_traceparent
from bastion.workflows.engine import TERMINAL
from bastion.workflows.spec import WorkflowSpec
from bastion.workflows.tables import WorkflowRow

R = TypeVar("R")


class Workflow(Generic[R]):
    """A declared workflow.

    ``checkout.start(ctx, id=..., **args)`` in a mutation starts it with the mutation's
    commit (a worker runs it); ``await checkout.run(ctx, id=..., **args)`` in an action
    runs it right away and returns its result (a worker resumes it if the process dies).
    The id is the idempotency key: the same id never starts a second run.
    """

    def __init__(self, spec: WorkflowSpec, runner: Job[Any]) -> None:
        self.spec = spec
        self._runner = runner
        self.__name__ = spec.name
        self.__doc__ = spec.fn.__doc__

    def __repr__(self) -> str:
        return f"<Workflow {self.spec.name}>"

    def start(
        self,
        target: Context | Session,
        /,
        *,
        id: str | None = None,
        parent_id: str | None = None,
        **args: Any,
    ) -> str:
        """Create the run in ``target``'s transaction; a worker executes it after commit.
        Returns the workflow id (the existing one's, if this id was started before)."""
        session, owner, request_id = _unpack(target, self.spec.name)
        workflow_id = id or uuid.uuid4().hex
        if self._insert(session, workflow_id, args, owner, request_id, parent_id):
            # The target, not just its session: the runner job keeps the request id.
            self._runner.options(dedup_key=f"workflow:{workflow_id}").enqueue(
                target, workflow_id=workflow_id
            )
        return workflow_id

    async def run(
        self,
        ctx: Context,
        /,
        *,
        id: str | None = None,
        **args: Any,
    ) -> Any:
        """Run now, in this task, and return the result (JSON-compatible data).

        A failed run raises the error of the step that failed (after compensations);
        a run already finished returns (or raises) what it did the first time.
        """
        runtime = ctx.services
        workflow_id = id or uuid.uuid4().hex
        owner = ctx.user.id if ctx.user else None

        def begin() -> None:
            with runtime.database.transaction() as session:
                if self._insert(session, workflow_id, args, owner, ctx.request_id or None, None):
                    # The safety net: resumes the run if this process dies before its end.
                    self._runner.options(
                        dedup_key=f"workflow:{workflow_id}",
                        delay=timedelta(seconds=self.spec.recovery_s),
                    ).enqueue(session, workflow_id=workflow_id, recovering=True)

        await anyio.to_thread.run_sync(begin)
        row, cause = await runtime.workflows.execute(self.spec, workflow_id)
        if row.status == "succeeded":
            return row.result
        if isinstance(cause, BastionError):
            raise cause  # failed (compensation done, or left to the runner job to finish)
        if row.status not in TERMINAL and row.status != "compensating":
            return None  # asleep: a worker finishes it
        raise BastionError(row.error_code or "internal_error")

    def _insert(
        self,
        session: Session,
        workflow_id: str,
        args: dict[str, Any],
        owner: str | None,
        request_id: str | None,
        parent_id: str | None,
    ) -> bool:
        if len(workflow_id) > 200:
            raise ValueError("a workflow id is at most 200 characters")
        dialect = session.get_bind().dialect.name
        insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(WorkflowRow)
        now = utcnow()
        inserted = session.execute(
            insert.values(
                id=workflow_id,
                name=self.spec.name,
                status="pending",
                args=self.spec.arguments.dump(args),
                owner=owner,
                parent_id=parent_id,
                request_id=request_id,
                trace_context=current_traceparent(),
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(WorkflowRow.id)
        ).scalar_one_or_none()
        return inserted is not None


def _unpack(target: Context | Session, name: str) -> tuple[Session, str | None, str | None]:
    if isinstance(target, Context):
        if target.db is None:
            raise RuntimeError(
                f"start workflow {name} from a mutation, or use 'await {name}.run(ctx, ...)'"
            )
        session = target.db
        owner = target.user.id if target.user else None
        request_id = target.request_id or None
    else:
        session, owner, request_id = target, None, None
    if isinstance(session, ReadOnlySession):
        raise ReadOnlyViolation(detail=f"cannot start workflow {name} from a query")
    return session, owner, request_id
