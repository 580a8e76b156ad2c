"""``GET /workflows/{id}``: a run's status and step timeline, for its owner or an admin."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from pydantic import BaseModel

from bastion.errors import NotAuthenticated, NotFound
from bastion.http.state import user_of
from bastion.workflows import Workflows


class StepOut(BaseModel):
    position: int
    name: str
    kind: str
    status: str
    attempts: int
    error: str | None
    wake_at: datetime | None
    started_at: datetime
    finished_at: datetime | None


class WorkflowOut(BaseModel):
    id: str
    name: str
    status: str
    result: Any
    error_code: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    steps: list[StepOut]


def build_workflow_router(workflows: Workflows, *, admin_permission: str) -> APIRouter:
    router = APIRouter(tags=["workflows"])

    @router.get("/workflows/{workflow_id}", response_model=WorkflowOut)
    async def workflow_status(request: Request, workflow_id: str) -> WorkflowOut:
        """A workflow's status, result and steps (compensations included), in order.

        Only its owner (who started it) or an admin may see it; others get 404.
        """
        user = user_of(request.scope)
        if user is None:
            raise NotAuthenticated()
        timeline = await anyio.to_thread.run_sync(workflows.get, workflow_id)
        if timeline is None or not (
            timeline.workflow.owner == user.id or user.allows(admin_permission)
        ):
            raise NotFound()
        row = timeline.workflow
        return WorkflowOut(
            id=row.id,
            name=row.name,
            status=row.status,
            result=row.result,
            error_code=row.error_code,
            created_at=row.created_at,
            updated_at=row.updated_at,
            finished_at=row.finished_at,
            steps=[StepOut.model_validate(step, from_attributes=True) for step in timeline.steps],
        )

    return router
