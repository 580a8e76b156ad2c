"""Outbound webhooks: an event becomes one delivery per subscription; each delivery is
POSTed, signed, by a job whose retry policy does the retrying.

A delivery's attempt is three steps, none holding a transaction while the network is
waited on: :func:`begin_attempt` reads what to send, :class:`Sender` sends it, and
:func:`record_attempt` writes the outcome to the delivery log.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import anyio
import httpx
from pydantic_core import to_jsonable_python
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bastion.db.database import Database
from bastion.db.tables import utcnow
from bastion.errors import Conflict
from bastion.observability.tracing import Tracing
from bastion.settings.sections import WebhooksSection
from bastion.webhooks.signing import sign
from bastion.webhooks.tables import WebhookDeliveryRow, WebhookSubscriptionRow

#: ``order.created``: lowercase dot-separated words.
EVENT_TYPE = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")
MAX_EVENT_TYPE_LENGTH = 100
#: Errors kept per delivery: the last attempt's only; the log keeps the rest.
MAX_ERROR_CHARS = 2000


class DeliveryStatus(StrEnum):
    """Where a delivery stands; the admin log filters on it."""

    PENDING = "pending"  #: created (or redelivered); no attempt made yet
    FAILED = "failed"  #: the last attempt failed; the job will try again
    SUCCEEDED = "succeeded"  #: the endpoint answered 2xx
    DEAD = "dead"  #: given up: attempts exhausted, 410 Gone, or subscription inactive


class DeliveryFailed(Exception):
    """An attempt failed (non-2xx, connection error, time-out); the job retries it."""


@dataclass(frozen=True, slots=True)
class PublishedEvent:
    """What :func:`~bastion.webhooks.publish` created: the event's id (the same in every
    delivery, so receivers deduplicate on it) and one delivery per subscription."""

    id: str
    delivery_ids: list[int]


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one attempt sends, read before the request so no transaction waits on it."""

    delivery_id: int
    url: str
    secret: str
    event_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """How one attempt went: the status code (``None`` without a response), its time,
    and what went wrong, if anything."""

    status_code: int | None
    duration_ms: int
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        return self.status_code == 410


def check_event_type(event_type: str) -> str:
    """``event_type`` if it is a valid name (``order.created``); ValueError otherwise."""
    if len(event_type) > MAX_EVENT_TYPE_LENGTH or not EVENT_TYPE.match(event_type):
        raise ValueError(
            f"event type {event_type!r} must be lowercase dot-separated words "
            f"(like 'order.created'), at most {MAX_EVENT_TYPE_LENGTH} characters"
        )
    return event_type


def check_pattern(pattern: str) -> str:
    """A subscription's event pattern: a type, a prefix ``order.*``, or ``*``."""
    if pattern != "*":
        check_event_type(pattern.removesuffix(".*"))
    return pattern


def matches(patterns: Sequence[str], event_type: str) -> bool:
    """Whether a subscription to ``patterns`` wants ``event_type``."""
    return any(
        pattern in ("*", event_type)
        or (pattern.endswith(".*") and event_type.startswith(pattern[:-1]))
        for pattern in patterns
    )


def create_deliveries(
    session: Session, event_type: str, payload: Any, *, enqueue: Callable[[int], int]
) -> PublishedEvent:
    """Write one delivery per matching active subscription in ``session``'s transaction
    and ``enqueue(delivery_id)`` its job there too: all exist if and only if it commits."""
    check_event_type(event_type)
    data = to_jsonable_python(payload)
    event_id = f"evt_{secrets.token_hex(12)}"
    now = utcnow()
    subscriptions = session.scalars(
        select(WebhookSubscriptionRow)
        .where(WebhookSubscriptionRow.active.is_(True))
        .order_by(WebhookSubscriptionRow.id)
    )
    rows = [
        WebhookDeliveryRow(
            subscription_id=subscription.id,
            event_type=event_type,
            event_id=event_id,
            payload=data,
            status=DeliveryStatus.PENDING.value,
            attempts=0,
            created_at=now,
            next_attempt_at=now,
        )
        for subscription in subscriptions
        if matches(subscription.events, event_type)
    ]
    session.add_all(rows)
    session.flush()
    for row in rows:
        row.job_id = enqueue(row.id)
    return PublishedEvent(event_id, [row.id for row in rows])


def redeliver(row: WebhookDeliveryRow, *, enqueue: Callable[[int], int]) -> None:
    """Send a finished delivery again: a new job with a fresh set of attempts.

    Raises:
        Conflict: it is still pending or failing; its job is still trying.
    """
    if row.status not in (DeliveryStatus.SUCCEEDED, DeliveryStatus.DEAD):
        # Two jobs for one delivery would race on its log (and send it twice).
        raise Conflict()
    row.status = DeliveryStatus.PENDING.value
    row.next_attempt_at = utcnow()
    row.job_id = enqueue(row.id)


def envelope(row: WebhookDeliveryRow) -> bytes:
    """The body every attempt of a delivery sends: ``{id, type, created_at, data}``."""
    document = {
        "id": row.event_id,
        "type": row.event_type,
        "created_at": _rfc3339(row.created_at),
        "data": row.payload,
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def begin_attempt(database: Database, delivery_id: int) -> Attempt | None:
    """What to send for ``delivery_id``, or ``None`` when there is nothing to do.

    Nothing to do: the delivery was deleted with its subscription, or it already
    succeeded (its job runs again after a worker died before settling it). A delivery
    whose subscription was deactivated is marked dead instead of sent.
    """
    with database.transaction() as session:
        row = session.get(WebhookDeliveryRow, delivery_id)
        if row is None or row.status == DeliveryStatus.SUCCEEDED:
            return None
        subscription = session.get(WebhookSubscriptionRow, row.subscription_id)
        if subscription is None:
            return None
        if not subscription.active:
            row.status = DeliveryStatus.DEAD.value
            row.last_error = "subscription inactive"
            row.next_attempt_at = None
            return None
        return Attempt(row.id, subscription.url, subscription.secret, row.event_type, envelope(row))


def record_attempt(
    database: Database,
    delivery_id: int,
    result: AttemptResult,
    *,
    final: bool,
    retry_in_s: float,
) -> DeliveryStatus | None:
    """Write an attempt's outcome to the delivery log; returns the delivery's new status
    (``None`` when the delivery was deleted meanwhile).

    2xx succeeds; 410 Gone deactivates the subscription and ends the delivery; any
    other failure is ``failed`` (retried about ``retry_in_s`` later) or, on the
    ``final`` attempt, ``dead``.
    """
    now = utcnow()
    with database.transaction() as session:
        row = session.get(WebhookDeliveryRow, delivery_id)
        if row is None:
            return None
        row.attempts += 1
        row.last_status_code = result.status_code
        row.last_duration_ms = result.duration_ms
        row.last_error = _clip(result.error)
        row.next_attempt_at = None
        if result.ok:
            status = DeliveryStatus.SUCCEEDED
            row.delivered_at = now
        elif result.gone:
            status = DeliveryStatus.DEAD
            session.execute(
                update(WebhookSubscriptionRow)
                .where(WebhookSubscriptionRow.id == row.subscription_id)
                .values(active=False)
            )
        elif final:
            status = DeliveryStatus.DEAD
        else:
            status = DeliveryStatus.FAILED
            row.next_attempt_at = now + timedelta(seconds=retry_in_s)
        row.status = status.value
        return status


class Sender:
    """POSTs deliveries: one attempt each, within ``timeout_s``, no redirects followed.

    Its own httpx client, not ``runtime.http``: that client turns a 5xx into an
    exception without the status (the log needs it), retries on its own (the job's
    policy already does, with longer pauses), and keeps one breaker per dependency
    name (one slow subscriber must not stop deliveries to the others).
    """

    def __init__(self, settings: WebhooksSection, *, tracing: Tracing | None = None) -> None:
        self.settings = settings
        self.tracing = tracing
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        # Made on first use: an app that never delivers pays nothing for it.
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.settings.timeout_s),
                follow_redirects=False,
                headers={"User-Agent": self.settings.user_agent},
            )
            if self.tracing is not None:
                self.tracing.instrument_httpx(self._client)
        return self._client

    async def send(self, attempt: Attempt, timestamp: int) -> AttemptResult:
        """One attempt, signed at ``timestamp`` (each attempt afresh, so a late retry is
        not refused as stale)."""
        headers = {
            "Content-Type": "application/json",
            "Bastion-Event": attempt.event_type,
            "Bastion-Delivery": str(attempt.delivery_id),
            "Bastion-Signature": sign(attempt.secret, attempt.body, timestamp),
        }
        request = self.client.build_request(
            "POST", attempt.url, content=attempt.body, headers=headers
        )
        started = time.perf_counter()
        status_code: int | None = None
        error: str | None = None
        try:
            # httpx's time limits are per read; this one bounds the whole attempt.
            with anyio.fail_after(self.settings.timeout_s):
                # Only the status matters: the body is never read, however large.
                response = await self.client.send(request, stream=True)
                await response.aclose()
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
        except (httpx.TimeoutException, TimeoutError):
            error = f"timed out after {self.settings.timeout_s}s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        duration_ms = round((time.perf_counter() - started) * 1000)
        return AttemptResult(status_code, duration_ms, error)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _rfc3339(moment: datetime) -> str:
    # 2030-01-01T00:00:00Z: how the shop contract writes times.
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _clip(error: str | None) -> str | None:
    return error if error is None or len(error) <= MAX_ERROR_CHARS else error[:MAX_ERROR_CHARS]
