"""Webhooks in an app (declarations) and in a runtime (the service behind them).

``app.webhook_receiver(...)`` and ``app.use_webhooks()`` fill a
:class:`WebhookDeclarations`; each runtime builds a :class:`WebhookService` from it,
reachable as ``runtime.webhooks`` (``ctx.services.webhooks``). The delivery job is
a platform job: ``app.use_webhooks()`` adds it to the app's job registry, so every
worker of the app runs deliveries without the app declaring anything else.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import anyio.to_thread
from fastapi import APIRouter
from sqlalchemy.orm import Session

from bastion.context import Context, JobInfo
from bastion.db.database import Database, ReadOnlySession
from bastion.errors import ReadOnlyViolation
from bastion.jobs import JobRegistry, JobSpec, Retry, declare_job
from bastion.jobs import store as job_store
from bastion.observability.logs import get_logger
from bastion.observability.tracing import Tracing
from bastion.settings.sections import Settings
from bastion.webhooks.delivery import (
    DeliveryFailed,
    DeliveryStatus,
    PublishedEvent,
    Sender,
    begin_attempt,
    create_deliveries,
    record_attempt,
)
from bastion.webhooks.receiving import WebhookReceiver, build_receiver_router, resolve_secrets

#: The delivery job's stable name (``bastion.webhooks.deliver@v1`` in the jobs table).
DELIVERY_JOB = "bastion.webhooks.deliver"
#: Pauses after failed attempts 1, 2, 3...: 10 s, 30 s, 1.5 min, 4.5 min, 13.5 min,
#: 40 min, then hourly; with the default 8 attempts a delivery is dead after ~2 hours.
DEFAULT_RETRY = Retry(base_s=10.0, factor=3.0, max_delay_s=3600.0, jitter=0.2)


class WebhookDeclarations:
    """An app's webhooks: its receivers, and the delivery job once it sends them."""

    def __init__(self) -> None:
        self.receivers: list[WebhookReceiver] = []
        self.delivery_job: JobSpec | None = None

    def add_receiver(self, receiver: WebhookReceiver) -> None:
        for existing in self.receivers:
            if receiver.path == existing.path or receiver.source == existing.source:
                raise ValueError(
                    f"webhook receiver {receiver.path}: its path or source "
                    f"({receiver.source}) is already taken by {existing.path}"
                )
        self.receivers.append(receiver)

    def enable_delivery(self, *, retry: Retry | None, queue: str) -> JobSpec:
        """Declare the delivery job (once per app); returns its spec for the registry."""
        if self.delivery_job is not None:
            raise ValueError("webhooks are already enabled for this app")
        self.delivery_job = declare_job(
            deliver_webhook,
            name=DELIVERY_JOB,
            version=1,
            queue=queue,
            priority=0,
            retry=retry or DEFAULT_RETRY,
            max_attempts=None,
            timeout=None,
        )
        return self.delivery_job


class WebhookService:
    """``runtime.webhooks``: the receivers' routes, publishing, and delivering.

    Args:
        declarations: The app's webhooks.
        database: Where events, subscriptions and deliveries live.
        settings: All settings (the ``[webhooks]`` section, and receivers' secrets).
        registry: The app's jobs; every receiver's handler must be one of them.
        tracing: The runtime's tracing; deliveries send ``traceparent`` and get a span each.

    Raises:
        ValueError: a receiver's secret is empty or its handler is not the app's job.
    """

    def __init__(
        self,
        declarations: WebhookDeclarations,
        database: Database,
        settings: Settings,
        registry: JobRegistry,
        *,
        tracing: Tracing | None = None,
    ) -> None:
        self.database = database
        self.settings = settings
        self.receivers = [(r, resolve_secrets(r, settings)) for r in declarations.receivers]
        for receiver, _secrets in self.receivers:
            if registry.by_handler(receiver.handler.handler) is None:
                raise ValueError(
                    f"webhook receiver {receiver.path}: its handler {receiver.handler.name} "
                    "is not a job of this app (declare it with @app.job)"
                )
        declared = declarations.delivery_job
        # The attempt count is a setting, not part of the declaration: each enqueued
        # row carries it, and the worker gives up after that many.
        self.delivery_job = (
            replace(
                declared,
                retry=replace(declared.retry, max_attempts=settings.webhooks.max_attempts),
            )
            if declared is not None
            else None
        )
        self.sender = Sender(settings.webhooks, tracing=tracing)
        self.log = get_logger("bastion.webhooks")

    def csrf_exempt(self, prefix: str) -> frozenset[str]:
        """The receivers' paths: they act on a signature's authority, never a session's."""
        return frozenset(prefix + receiver.path for receiver, _secrets in self.receivers)

    def router(self) -> APIRouter | None:
        """The receivers' routes (relative to the API prefix); ``None`` without receivers."""
        if not self.receivers:
            return None
        return build_receiver_router(self.receivers, self.database, self.settings)

    def publish(
        self, session: Session, event_type: str, payload: Any, *, request_id: str | None = None
    ) -> PublishedEvent:
        """Publish in ``session``'s transaction; see :func:`publish`."""
        if isinstance(session, ReadOnlySession):
            raise ReadOnlyViolation(
                detail=f"cannot publish {event_type} from a query: queries are read-only; "
                "use a mutation"
            )
        return create_deliveries(
            session,
            event_type,
            payload,
            enqueue=lambda delivery_id: self.enqueue_delivery(session, delivery_id, request_id),
        )

    def enqueue_delivery(
        self, session: Session, delivery_id: int, request_id: str | None = None
    ) -> int:
        """Enqueue a delivery's job in ``session``'s transaction; returns the job id."""
        if self.delivery_job is None:
            raise RuntimeError(
                "webhooks are not enabled: call app.use_webhooks() so that a job delivers them"
            )
        job_id = job_store.enqueue(
            session, self.delivery_job, {"delivery_id": delivery_id}, request_id=request_id
        )
        assert job_id is not None  # None only for a dedup key, and there is none
        return job_id

    async def deliver(self, delivery_id: int, job: JobInfo | None) -> dict[str, Any]:
        """Make one attempt at a delivery and log it.

        Raises:
            DeliveryFailed: the attempt failed; the job's retry policy decides what next
                (on the last attempt the delivery is already marked dead).
        """
        attempt = await anyio.to_thread.run_sync(begin_attempt, self.database, delivery_id)
        if attempt is None:
            return {"delivery_id": delivery_id, "sent": False}
        result = await self.sender.send(attempt, int(time.time()))
        final = job is None or job.attempt >= job.max_attempts
        retry = self.delivery_job.retry if self.delivery_job is not None else DEFAULT_RETRY
        # Without jitter the pause is its longest: the next attempt comes no later.
        retry_in_s = replace(retry, jitter=0).delay(job.attempt if job else 1)
        status = await anyio.to_thread.run_sync(
            lambda: record_attempt(
                self.database, delivery_id, result, final=final, retry_in_s=retry_in_s
            )
        )
        self.log.info(
            "webhook_attempt",
            delivery_id=delivery_id,
            event_type=attempt.event_type,
            status_code=result.status_code,
            duration_ms=result.duration_ms,
            error=result.error,
            outcome=status,
        )
        if status in (DeliveryStatus.FAILED, DeliveryStatus.DEAD) and not result.gone:
            raise DeliveryFailed(result.error)
        return {"delivery_id": delivery_id, "sent": True, "status_code": result.status_code}

    async def aclose(self) -> None:
        """Close the delivery client (runtime shutdown)."""
        await self.sender.aclose()


def service_of(ctx: Context) -> WebhookService:
    """The webhook service of the runtime ``ctx`` belongs to."""
    service = getattr(ctx.services, "webhooks", None)
    if not isinstance(service, WebhookService):
        raise RuntimeError(f"{ctx.function or 'this context'} has no runtime with webhooks")
    return service


def publish(ctx: Context, event_type: str, payload: Any) -> PublishedEvent:
    """Publish an event to every active subscription that wants ``event_type``, inside a
    mutation: the deliveries and their jobs commit with it, so subscribers hear of the
    event if and only if the mutation commits.

    ``payload`` is anything JSON can represent (Pydantic models and datetimes
    included); subscribers get it as ``data``. Outside a function, use
    ``runtime.webhooks.publish(session, ...)`` with a session of your own.

    Example::

        @app.mutation("/orders")
        def create_order(ctx: Context, body: OrderIn) -> OrderOut:
            order = ...
            publish(ctx, "order.created", OrderOut.model_validate(order))
            return order
    """
    return service_of(ctx).publish(ctx.session, event_type, payload, request_id=ctx.request_id)


async def deliver_webhook(ctx: Context, delivery_id: int) -> dict[str, Any]:
    """Deliver one event to one subscription: one attempt per run of the job.

    Async, so no transaction is held while the endpoint is waited on; it runs at least
    once, and a repeat is recognised by the receiver through the event id.
    """
    return await service_of(ctx).deliver(delivery_id, ctx.job)
