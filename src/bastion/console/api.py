"""The operations API under ``{api_prefix}/admin``, for admins (shop-api.md, Administration).

JSON over what the runtime records: error groups, client logs, jobs, workflows,
the audit log and users. Lists are offset pages (``?page=&limit=``, newest first),
like the webhook admin endpoints. Every change needs a ``reason`` of 3+ characters
and is written to the audit log in the change's own transaction.

- ``GET /admin/errors?since=``: error groups (``bastion.monitoring.error_groups``);
- ``GET /admin/client-logs?level=&user_id=&request_id=&trace_id=``;
- ``GET /admin/jobs?status=&queue=&name=``, ``GET /admin/jobs/{id}`` (payload, attempts,
  last error, progress, request id, trace context);
- ``POST /admin/jobs/{id}/retry`` and ``/cancel`` with ``{reason}``: 409
  ``job_not_retryable`` / ``job_not_cancellable`` when the job's state does not allow it;
- ``GET /admin/workflows?status=&name=`` (one run with its steps: ``GET /workflows/{id}``);
- ``GET /admin/audit-log?actor=&action=&target=``;
- ``GET /admin/users?q=&role=&banned=`` (bans: ``POST /admin/users/{id}/ban`` and ``/unban``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from sqlalchemy import Select, String, cast, or_, select
from sqlalchemy.orm import Session

from bastion.auth.audit import AuditEntry, audit, require_reason
from bastion.auth.principal import Principal
from bastion.auth.users import User
from bastion.db.database import Database
from bastion.db.pagination import OffsetPage, OffsetPagination, paginate_offset
from bastion.errors import BastionError, NotFound
from bastion.http.state import request_id_of, require_permission
from bastion.jobs import JobRow
from bastion.jobs.store import JobStatus, JobStore
from bastion.monitoring.client_logs import ClientLog, Level, client_log
from bastion.monitoring.errors import ErrorGroup, count_error_groups, error_groups
from bastion.monitoring.tables import ClientLogRow
from bastion.webhooks.admin import ReasonIn
from bastion.workflows.tables import WorkflowRow

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

Page = Annotated[int, Query(ge=1)]
Limit = Annotated[int, Query(ge=1, le=100)]
_ROLE = r"^[A-Za-z0-9_.:-]{1,64}$"


class JobSummaryOut(BaseModel):
    id: int
    queue: str
    name: str
    status: str
    attempts: int
    max_attempts: int
    priority: int
    run_at: datetime
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    last_error: str | None
    request_id: str | None


class JobOut(JobSummaryOut):
    """A job with everything an operator needs to judge it."""

    args: dict[str, Any]
    """The payload it runs with."""
    progress: Any
    result: Any
    worker: str | None
    lease_until: datetime | None
    timeout_s: float | None
    dedup_key: str | None
    trace_context: str | None
    """The W3C ``traceparent`` of whoever enqueued it."""


class WorkflowSummaryOut(BaseModel):
    id: str
    name: str
    status: str
    owner: str | None
    parent_id: str | None
    error_code: str | None
    request_id: str | None
    trace_context: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class AuditOut(BaseModel):
    id: int
    created_at: datetime
    actor_id: str | None
    action: str
    target_type: str
    target_id: str
    reason: str | None
    request_id: str | None
    data: dict[str, Any]


class AdminUserOut(BaseModel):
    id: int
    email: str
    name: str
    roles: list[str]
    is_active: bool
    banned: bool
    banned_at: datetime | None
    ban_reason: str | None
    created_at: datetime


def build_admin_router(*, database: Database, jobs: JobStore, admin_permission: str) -> APIRouter:
    """The operations endpoints, each requiring ``admin_permission`` (401 for anonymous
    callers, 403 for others)."""

    def admin(request: Request) -> Principal:
        return require_permission(request.scope, admin_permission)

    router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(admin)])

    async def read(work: Callable[[Session], T]) -> T:
        def run() -> T:
            with database.read_transaction() as session:
                return work(session)

        return await anyio.to_thread.run_sync(run)

    @router.get("/errors", response_model=OffsetPage[ErrorGroup])
    async def list_error_groups(
        since: datetime | None = None, page: Page = 1, limit: Limit = 20
    ) -> OffsetPage[ErrorGroup]:
        """The error log grouped by code and route, most recently seen first; with
        ``since`` (RFC 3339; UTC when it names no zone) only errors from then on count."""
        start = since.replace(tzinfo=UTC) if since and since.tzinfo is None else since

        def work(session: Session) -> OffsetPage[ErrorGroup]:
            total = count_error_groups(session, since=start)
            groups = error_groups(session, since=start, limit=limit, offset=(page - 1) * limit)
            return OffsetPage[ErrorGroup](
                data=groups,
                pagination=OffsetPagination(
                    page=page, limit=limit, total=total, total_pages=math.ceil(total / limit)
                ),
            )

        return await read(work)

    @router.get("/client-logs", response_model=OffsetPage[ClientLog])
    async def list_client_logs(
        level: Level | None = None,
        user_id: Annotated[str | None, Query(max_length=64)] = None,
        request_id: Annotated[str | None, Query(max_length=128)] = None,
        trace_id: Annotated[str | None, Query(max_length=32)] = None,
        page: Page = 1,
        limit: Limit = 20,
    ) -> OffsetPage[ClientLog]:
        """Logs and errors sent by clients, newest first."""
        statement = select(ClientLogRow).order_by(ClientLogRow.id.desc())
        for column, value in (
            (ClientLogRow.level, level),
            (ClientLogRow.user_id, user_id),
            (ClientLogRow.request_id, request_id),
            (ClientLogRow.trace_id, trace_id),
        ):
            if value is not None:
                statement = statement.where(column == value)
        return await read(lambda s: _page(s, statement, page, limit, client_log))

    @router.get("/jobs", response_model=OffsetPage[JobSummaryOut])
    async def list_jobs(
        status: JobStatus | None = None,
        queue: Annotated[str | None, Query(max_length=64)] = None,
        name: Annotated[str | None, Query(max_length=200)] = None,
        page: Page = 1,
        limit: Limit = 20,
    ) -> OffsetPage[JobSummaryOut]:
        """Jobs, newest first."""
        statement = select(JobRow).order_by(JobRow.id.desc())
        if status is not None:
            statement = statement.where(JobRow.status == status.value)
        if queue is not None:
            statement = statement.where(JobRow.queue == queue)
        if name is not None:
            statement = statement.where(JobRow.name == name)
        return await read(lambda s: _page(s, statement, page, limit, _rows(JobSummaryOut)))

    @router.get("/jobs/{job_id}", response_model=JobOut)
    async def get_job(job_id: int) -> JobOut:
        """One job: payload, attempts, last error, progress, request id and trace context."""

        def work(session: Session) -> JobOut:
            row = session.get(JobRow, job_id)
            if row is None:
                raise NotFound()
            return JobOut.model_validate(row, from_attributes=True)

        return await read(work)

    async def operate(request: Request, job_id: int, body: ReasonIn, verb: str) -> JobOut:
        actor = admin(request)
        reason = require_reason(body.reason)
        request_id = request_id_of(request.scope) or None

        def run() -> JobOut:
            with database.transaction() as session:
                row = session.get(JobRow, job_id)
                if row is None:
                    raise NotFound()
                previous = row.status
                move = jobs.retry if verb == "retry" else jobs.cancel
                if not move(job_id, session=session):
                    code = "job_not_retryable" if verb == "retry" else "job_not_cancellable"
                    raise BastionError(code, current=previous)
                audit(
                    session,
                    actor_id=actor.id,
                    action=f"job.{verb}",
                    target_type="job",
                    target_id=job_id,
                    reason=reason,
                    request_id=request_id,
                    previous_status=previous,
                    name=row.name,
                )
                session.flush()
                session.refresh(row)
                return JobOut.model_validate(row, from_attributes=True)

        return await anyio.to_thread.run_sync(run)

    @router.post("/jobs/{job_id}/retry", response_model=JobOut)
    async def retry_job(request: Request, job_id: int, body: ReasonIn) -> JobOut:
        """Queue a dead or cancelled job again now, with a fresh set of attempts (409
        ``job_not_retryable`` otherwise)."""
        return await operate(request, job_id, body, "retry")

    @router.post("/jobs/{job_id}/cancel", response_model=JobOut)
    async def cancel_job(request: Request, job_id: int, body: ReasonIn) -> JobOut:
        """Cancel a queued or running job (409 ``job_not_cancellable`` otherwise); a running
        one is stopped by its worker at its next lease extension."""
        return await operate(request, job_id, body, "cancel")

    @router.get("/workflows", response_model=OffsetPage[WorkflowSummaryOut])
    async def list_workflows(
        status: Annotated[str | None, Query(max_length=24)] = None,
        name: Annotated[str | None, Query(max_length=200)] = None,
        page: Page = 1,
        limit: Limit = 20,
    ) -> OffsetPage[WorkflowSummaryOut]:
        """Workflow runs, newest first; ``GET /workflows/{id}`` shows one with its steps."""
        statement = select(WorkflowRow).order_by(
            WorkflowRow.created_at.desc(), WorkflowRow.id.desc()
        )
        if status is not None:
            statement = statement.where(WorkflowRow.status == status)
        if name is not None:
            statement = statement.where(WorkflowRow.name == name)
        return await read(lambda s: _page(s, statement, page, limit, _rows(WorkflowSummaryOut)))

    @router.get("/audit-log", response_model=OffsetPage[AuditOut])
    async def list_audit_log(
        actor: Annotated[str | None, Query(max_length=64)] = None,
        action: Annotated[str | None, Query(max_length=100)] = None,
        target: Annotated[str | None, Query(max_length=120)] = None,
        page: Page = 1,
        limit: Limit = 20,
    ) -> OffsetPage[AuditOut]:
        """Audited actions, newest first. ``action`` is a name (``user.ban``) or a prefix
        ending in ``*`` (``job.*``); ``target`` is a type (``user``) or ``type:id``."""
        statement = audit_query(actor=actor, action=action, target=target)
        return await read(lambda s: _page(s, statement, page, limit, _rows(AuditOut)))

    @router.get("/users", response_model=OffsetPage[AdminUserOut])
    async def list_users(
        q: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        role: Annotated[str | None, Query(pattern=_ROLE)] = None,
        banned: bool | None = None,
        page: Page = 1,
        limit: Limit = 20,
    ) -> OffsetPage[AdminUserOut]:
        """Users, newest first; ``q`` matches part of the email or the name (any case)."""
        statement = users_query(q=q, role=role, banned=banned)
        return await read(lambda s: _page(s, statement, page, limit, _user_out))

    return router


def audit_query(
    *, actor: str | None = None, action: str | None = None, target: str | None = None
) -> Select[AuditEntry]:
    """Audit entries, newest first. ``action`` is a name (``user.ban``) or a prefix
    ending in ``*`` (``job.*``); ``target`` is a type (``user``) or ``type:id``."""
    statement = select(AuditEntry).order_by(AuditEntry.id.desc())
    if actor:
        statement = statement.where(AuditEntry.actor_id == actor)
    if action and action.endswith("*"):
        statement = statement.where(AuditEntry.action.startswith(action[:-1], autoescape=True))
    elif action:
        statement = statement.where(AuditEntry.action == action)
    if target:
        target_type, _, target_id = target.partition(":")
        statement = statement.where(AuditEntry.target_type == target_type)
        if target_id:
            statement = statement.where(AuditEntry.target_id == target_id)
    return statement


def users_query(
    *, q: str | None = None, role: str | None = None, banned: bool | None = None
) -> Select[User]:
    """Users, newest first; ``q`` matches part of the email or the name in any case,
    ``%`` and ``_`` included literally."""
    statement = select(User).order_by(User.id.desc())
    if q:
        needle = q.lower()
        statement = statement.where(
            or_(
                User.email.contains(needle, autoescape=True),
                User.name.ilike(f"%{_escape(needle)}%", escape="\\"),
            )
        )
    if role is not None:
        # Roles are a JSON list of plain names, so its text holds the name in quotes
        # on both databases.
        statement = statement.where(cast(User.roles, String).contains(f'"{role}"', autoescape=True))
    if banned is not None:
        statement = statement.where(
            User.banned_at.is_not(None) if banned else User.banned_at.is_(None)
        )
    return statement


def _page(
    session: Session, statement: Any, page: int, limit: int, out: Callable[[Any], T]
) -> OffsetPage[T]:
    result = paginate_offset(session, statement, page=page, limit=limit)
    assert isinstance(result.pagination, OffsetPagination)
    return OffsetPage(data=[out(row) for row in result.data], pagination=result.pagination)


def _rows(model: type[M]) -> Callable[[Any], M]:
    return lambda row: model.model_validate(row, from_attributes=True)


def _user_out(user: User) -> AdminUserOut:
    return AdminUserOut(
        id=user.id,
        email=user.email,
        name=user.name,
        roles=list(user.roles),
        is_active=user.is_active,
        banned=user.is_banned,
        banned_at=user.banned_at,
        ban_reason=user.ban_reason,
        created_at=user.created_at,
    )


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
