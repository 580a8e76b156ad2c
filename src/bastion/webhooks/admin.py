"""Managing webhooks over HTTP, for admins: subscriptions, the delivery log, redelivery.

These are ordinary bastion functions (``app.use_webhooks()`` declares them), so they
get the same permission check, transaction, validation, errors and OpenAPI as the
app's own. Every change needs a ``reason`` and is written to the audit log in its
transaction.

======  ===================================================================  =====
POST    ``/admin/webhooks`` ``{url, events, description?, reason}``          201
GET     ``/admin/webhooks?page=&limit=``                                     200
DELETE  ``/admin/webhooks/{id}?reason=``                                     204
GET     ``/admin/webhooks/deliveries?subscription_id=&status=&page=&limit=`` 200
GET     ``/admin/webhooks/{id}/deliveries?status=&page=&limit=``             200
POST    ``/admin/webhooks/{id}/deliveries/{delivery_id}/redeliver {reason}``  202
======  ===================================================================  =====
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Select, select

from bastion.auth.audit import audit, require_reason
from bastion.context import Context
from bastion.db.pagination import OffsetPage, PageResult, paginate_offset
from bastion.errors import NotFound
from bastion.functions import FunctionKind, FunctionSpec, declare
from bastion.webhooks.delivery import DeliveryStatus, check_pattern, redeliver
from bastion.webhooks.service import service_of
from bastion.webhooks.tables import WebhookDeliveryRow, WebhookSubscriptionRow

#: Subscription secrets start with this, so a leaked one is recognisable (secret scanners).
SECRET_PREFIX = "whsec_"

Page = Annotated[int, Query(ge=1)]
Limit = Annotated[int, Query(ge=1, le=100)]


class SubscriptionIn(BaseModel):
    """A new subscription: where to POST, and which event types."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048)
    """An ``http`` or ``https`` URL."""
    events: list[str] = Field(min_length=1, max_length=50)
    """Event types (``order.created``), prefixes (``order.*``) or ``*``."""
    description: str = Field("", max_length=500)
    reason: str = Field(max_length=1000)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http or https URL")
        return value

    @field_validator("events")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        return sorted({check_pattern(pattern) for pattern in value})


class ReasonIn(BaseModel):
    """Why an admin does something; it goes to the audit log."""

    reason: str = Field(max_length=1000)


class SubscriptionOut(BaseModel):
    """A subscription as admins see it: everything but the secret."""

    id: int
    url: str
    events: list[str]
    active: bool
    description: str
    created_at: datetime


class SubscriptionCreated(SubscriptionOut):
    """The subscription with its signing secret, shown this once only."""

    secret: str


class DeliveryOut(BaseModel):
    """One entry of the delivery log; the ``last_*`` fields describe the latest attempt."""

    id: int
    subscription_id: int
    event_type: str
    event_id: str
    payload: Any
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_duration_ms: int | None
    last_error: str | None
    job_id: int | None
    created_at: datetime
    delivered_at: datetime | None
    next_attempt_at: datetime | None


def create_subscription(ctx: Context, body: SubscriptionIn) -> SubscriptionCreated:
    """Subscribe a URL to event types; the answer holds the signing secret, once."""
    reason = require_reason(body.reason)
    row = WebhookSubscriptionRow(
        url=body.url,
        events=body.events,
        secret=SECRET_PREFIX + secrets.token_urlsafe(32),
        active=True,
        description=body.description,
    )
    ctx.session.add(row)
    ctx.session.flush()
    _audit(ctx, "webhook.subscribe", "webhook_subscription", row.id, reason, url=row.url)
    return SubscriptionCreated.model_validate(row, from_attributes=True)


def list_subscriptions(ctx: Context, page: Page = 1, limit: Limit = 20) -> PageResult[Any]:
    """List subscriptions, newest first (without their secrets)."""
    statement = select(WebhookSubscriptionRow).order_by(WebhookSubscriptionRow.id.desc())
    return paginate_offset(ctx.session, statement, page=page, limit=limit)


def delete_subscription(
    ctx: Context, subscription_id: int, reason: Annotated[str, Query(max_length=1000)] = ""
) -> None:
    """Delete a subscription and its delivery log; its pending deliveries are dropped."""
    text = require_reason(reason)
    row = ctx.session.get(WebhookSubscriptionRow, subscription_id)
    if row is None:
        raise NotFound()
    ctx.session.delete(row)  # its deliveries go with it (ON DELETE CASCADE)
    _audit(ctx, "webhook.unsubscribe", "webhook_subscription", subscription_id, text, url=row.url)


def list_deliveries(
    ctx: Context,
    subscription_id: Annotated[int | None, Query(ge=1)] = None,
    status: DeliveryStatus | None = None,
    page: Page = 1,
    limit: Limit = 20,
) -> PageResult[Any]:
    """The delivery log of every subscription, newest first."""
    return paginate_offset(
        ctx.session, _deliveries(subscription_id, status), page=page, limit=limit
    )


def list_subscription_deliveries(
    ctx: Context,
    subscription_id: int,
    status: DeliveryStatus | None = None,
    page: Page = 1,
    limit: Limit = 20,
) -> PageResult[Any]:
    """The delivery log of one subscription, newest first."""
    if ctx.session.get(WebhookSubscriptionRow, subscription_id) is None:
        raise NotFound()
    return paginate_offset(
        ctx.session, _deliveries(subscription_id, status), page=page, limit=limit
    )


def redeliver_delivery(
    ctx: Context, subscription_id: int, delivery_id: int, body: ReasonIn
) -> DeliveryOut:
    """Send a succeeded or dead delivery again (409 while it is still being attempted)."""
    reason = require_reason(body.reason)
    # Locked: two admins redelivering at once must not start two jobs.
    row = ctx.session.get(WebhookDeliveryRow, delivery_id, with_for_update=True)
    if row is None or row.subscription_id != subscription_id:
        raise NotFound()
    service = service_of(ctx)
    redeliver(
        row, enqueue=lambda target: service.enqueue_delivery(ctx.session, target, ctx.request_id)
    )
    _audit(ctx, "webhook.redeliver", "webhook_delivery", delivery_id, reason, event_id=row.event_id)
    return DeliveryOut.model_validate(row, from_attributes=True)


def admin_functions(permission: str) -> list[FunctionSpec]:
    """The management functions, each requiring ``permission``."""
    table: list[tuple[FunctionKind, Any, str, str, int | None, Any]] = [
        (FunctionKind.MUTATION, create_subscription, "", "POST", 201, None),
        (FunctionKind.QUERY, list_subscriptions, "", "GET", None, OffsetPage[SubscriptionOut]),
        (FunctionKind.QUERY, list_deliveries, "/deliveries", "GET", None, OffsetPage[DeliveryOut]),
        (FunctionKind.MUTATION, delete_subscription, "/{subscription_id}", "DELETE", 204, None),
        (
            FunctionKind.QUERY,
            list_subscription_deliveries,
            "/{subscription_id}/deliveries",
            "GET",
            None,
            OffsetPage[DeliveryOut],
        ),
        (
            FunctionKind.MUTATION,
            redeliver_delivery,
            "/{subscription_id}/deliveries/{delivery_id}/redeliver",
            "POST",
            202,
            None,
        ),
    ]
    return [
        declare(
            kind,
            fn,
            path=f"/admin/webhooks{path}",
            method=method,
            status_code=status_code,
            response=response,
            permissions=[permission],
            name=f"webhooks_{fn.__name__}",
            tags=["admin"],
            cache_control=None,
            etag=False,
        )
        for kind, fn, path, method, status_code, response in table
    ]


def _deliveries(subscription_id: int | None, status: DeliveryStatus | None) -> Select[Any]:
    statement = select(WebhookDeliveryRow).order_by(WebhookDeliveryRow.id.desc())
    if subscription_id is not None:
        statement = statement.where(WebhookDeliveryRow.subscription_id == subscription_id)
    if status is not None:
        statement = statement.where(WebhookDeliveryRow.status == status.value)
    return statement


def _audit(
    ctx: Context, action: str, target_type: str, target_id: int, reason: str, **data: Any
) -> None:
    audit(
        ctx.session,
        actor_id=ctx.user.id if ctx.user is not None else None,
        action=action,
        target_type=target_type,
        target_id=target_id,
        reason=reason,
        request_id=ctx.request_id,
        **data,
    )
