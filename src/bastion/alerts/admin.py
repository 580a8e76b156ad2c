"""``GET /admin/alerts``: every rule's state and the latest events, for admins.

An ordinary bastion query (``app.use_alerts()`` declares it), so it gets the same
permission check (401 ``not_authenticated``, 403 ``permission_denied``), validation
and OpenAPI as the app's own functions.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Query
from pydantic import BaseModel, ConfigDict

from bastion.alerts.state import alert_history, alert_states
from bastion.context import Context
from bastion.functions import FunctionKind, FunctionSpec, declare


class AlertStateOut(BaseModel):
    """Where a rule stands: ``ok`` or ``firing`` since ``since``."""

    model_config = ConfigDict(from_attributes=True)

    rule: str
    state: str
    value: float | None
    since: datetime
    evaluated_at: datetime
    last_notified_at: datetime | None


class AlertEventOut(BaseModel):
    """A rule fired, fired again after its cooldown, or resolved; and each channel's outcome."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    rule: str
    kind: str
    value: float | None
    threshold: float
    message: str
    notified: dict[str, Any] | None
    created_at: datetime


class AlertsOut(BaseModel):
    states: list[AlertStateOut]
    events: list[AlertEventOut]


def list_alerts(
    ctx: Context,
    rule: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AlertsOut:
    """Every rule's current state (firing first) and the latest events, newest first."""
    return AlertsOut(
        states=[AlertStateOut.model_validate(row) for row in alert_states(ctx.session)],
        events=[
            AlertEventOut.model_validate(row)
            for row in alert_history(ctx.session, limit=limit, rule=rule)
        ],
    )


def admin_function(permission: str) -> FunctionSpec:
    """The ``GET /admin/alerts`` query, requiring ``permission``."""
    return declare(
        FunctionKind.QUERY,
        list_alerts,
        path="/admin/alerts",
        method="GET",
        status_code=None,
        response=AlertsOut,
        permissions=[permission],
        name="alerts_list_alerts",
        tags=["admin"],
        cache_control=None,
        etag=False,
    )
