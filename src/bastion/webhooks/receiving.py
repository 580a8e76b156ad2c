"""Inbound webhooks: verify, deduplicate, hand to a job, answer fast.

A sender waits for our answer and retries when it is slow or not 2xx, so a receiver
does no work of its own: it checks the signature on the raw body, records the event
id (unique per source) and enqueues the app's handler job in one transaction, and
answers 200. A repeated event id finds its row already there and is answered 200
with ``"duplicate": true``, without a second job: each event is processed once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from pydantic import BaseModel, SecretStr
from sqlalchemy import Table, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from starlette.responses import JSONResponse

from bastion.db.database import Database
from bastion.db.tables import utcnow
from bastion.errors import BadRequest, FieldError, InvalidSignature, ValidationFailed
from bastion.functions import database_error
from bastion.integrations.http import current_request_id
from bastion.jobs import Job, JobSpec
from bastion.jobs import store as job_store
from bastion.observability.logs import get_logger
from bastion.settings.sections import Settings
from bastion.webhooks.signing import verify_signature
from bastion.webhooks.tables import WebhookEventRow

#: What a secret resolver may return: one secret, or several while rotating.
SecretValue = str | SecretStr | Sequence[str | SecretStr]
MAX_EVENT_ID_LENGTH = 255
MAX_SOURCE_LENGTH = 100
_EVENTS: Table = WebhookEventRow.__table__  # type: ignore[assignment]


def default_event_id(payload: Any) -> Any:
    """The event id of most senders (Stripe, GitHub's deliveries, the shop's gateway)."""
    return payload["id"]


class Received(BaseModel):
    """The receiver's answer: ``duplicate`` when the event id was seen before."""

    received: bool
    duplicate: bool


@dataclass(frozen=True, slots=True)
class WebhookReceiver:
    """A declared receiver (``app.webhook_receiver``); see that method for the fields."""

    path: str
    source: str
    handler: JobSpec
    secret: Callable[[Settings], SecretValue]
    secret_name: str
    header: str
    event_id: Callable[[Any], Any]
    tolerance_s: float | None


def declare_receiver(
    path: str,
    *,
    handler: Job[Any],
    secret: Callable[[Settings], SecretValue] | None,
    secret_setting: str | None,
    header: str,
    event_id: Callable[[Any], Any],
    source: str | None,
    tolerance_s: float | None,
) -> WebhookReceiver:
    """Check a receiver's declaration; raises TypeError/ValueError with a clear message."""
    label = f"webhook receiver {path}"
    if not path.startswith("/"):
        raise ValueError(f"{label}: path must start with '/'")
    if (secret is None) == (secret_setting is None):
        raise TypeError(f"{label}: give secret= (a function of the settings) or secret_setting=")
    if tolerance_s is not None and tolerance_s <= 0:
        raise ValueError(f"{label}: tolerance_s must be positive")
    if len(source or path) > MAX_SOURCE_LENGTH:
        raise ValueError(f"{label}: the source is stored in {MAX_SOURCE_LENGTH} characters")
    fields = handler.spec.arguments.model.model_fields
    others = [name for name, field in fields.items() if name != "event" and field.is_required()]
    if "event" not in fields or others:
        raise TypeError(
            f"{label}: the handler job {handler.spec.name} must take the payload as `event` "
            "and no other argument without a default"
        )
    return WebhookReceiver(
        path=path,
        source=source or path,
        handler=handler.spec,
        secret=secret or _from_setting(str(secret_setting)),
        secret_name=secret_setting or "secret=",
        header=header,
        event_id=event_id,
        tolerance_s=tolerance_s,
    )


def resolve_secrets(receiver: WebhookReceiver, settings: Settings) -> tuple[str, ...]:
    """The receiver's secrets under ``settings``; ValueError when there are none."""
    value = receiver.secret(settings)
    values = [value] if isinstance(value, str | SecretStr) else list(value)
    secrets = tuple(v.get_secret_value() if isinstance(v, SecretStr) else v for v in values)
    if not secrets or not all(isinstance(v, str) and v for v in secrets):
        raise ValueError(
            f"webhook receiver {receiver.path}: its secret ({receiver.secret_name}) is empty"
        )
    return secrets


def build_receiver_router(
    receivers: Sequence[tuple[WebhookReceiver, tuple[str, ...]]],
    database: Database,
    settings: Settings,
) -> APIRouter:
    """One ``POST`` route per receiver (paths relative to the API prefix)."""
    router = APIRouter(tags=["webhooks"])
    for receiver, secrets in receivers:
        router.add_api_route(
            receiver.path,
            _endpoint(receiver, secrets, database, settings),
            methods=["POST"],
            response_model=Received,
            name=f"webhook:{receiver.source}",
            summary=f"Receive {receiver.source} webhooks",
            openapi_extra=_openapi(receiver.header),
        )
    return router


def _endpoint(
    receiver: WebhookReceiver,
    secrets: tuple[str, ...],
    database: Database,
    settings: Settings,
) -> Callable[[Request], Any]:
    tolerance_s = receiver.tolerance_s or settings.webhooks.tolerance_s
    log = get_logger("bastion.webhooks", source=receiver.source)

    async def receive(request: Request) -> JSONResponse:
        # The raw bytes: the MAC covers them exactly. The body limit middleware bounds them.
        body = await request.body()
        try:
            verify_signature(
                secrets,
                body,
                request.headers.get(receiver.header),
                now=time.time(),
                tolerance_s=tolerance_s,
            )
        except InvalidSignature as error:
            log.warning("webhook_signature_refused", reason=error.reason)
            raise
        try:
            payload = json.loads(body)
        except ValueError:
            raise BadRequest("invalid_json") from None
        event_id = _event_id(receiver, payload)
        request_id = current_request_id()
        try:
            duplicate = await anyio.to_thread.run_sync(
                _record, database, receiver, event_id, payload, request_id
            )
        except sa_exc.DBAPIError as error:
            raise database_error(error) from error
        log.info("webhook_received", event_id=event_id, duplicate=duplicate)
        return JSONResponse(Received(received=True, duplicate=duplicate).model_dump())

    receive.__doc__ = (
        f"Verify the `{receiver.header}` signature, record the event once per id and hand "
        f"it to the `{receiver.handler.name}` job."
    )
    return receive


def _record(
    database: Database,
    receiver: WebhookReceiver,
    event_id: str,
    payload: Any,
    request_id: str | None,
) -> bool:
    """Record the event and enqueue its job in one transaction; ``True`` when the event
    was recorded before (nothing is enqueued then)."""
    with database.transaction() as session:
        inserted = _insert_once(session, receiver.source, event_id, payload)
        if inserted is None:
            return True
        job_id = job_store.enqueue(
            session, receiver.handler, {"event": payload}, request_id=request_id
        )
        session.execute(update(_EVENTS).where(_EVENTS.c.id == inserted).values(job_id=job_id))
        return False


def _insert_once(session: Session, source: str, event_id: str, payload: Any) -> int | None:
    # ON CONFLICT DO NOTHING: a concurrent duplicate waits for the first insert's
    # transaction and then inserts nothing, instead of failing with an integrity error.
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    inserted = session.execute(
        insert(_EVENTS)
        .values(source=source, event_id=event_id, payload=payload, received_at=utcnow())
        .on_conflict_do_nothing(index_elements=["source", "event_id"])
        .returning(_EVENTS.c.id)
    ).scalar_one_or_none()
    return None if inserted is None else int(inserted)


def _event_id(receiver: WebhookReceiver, payload: Any) -> str:
    try:
        value = receiver.event_id(payload)
    except (KeyError, IndexError, TypeError, ValueError):
        value = None
    if isinstance(value, bool) or not isinstance(value, str | int):
        value = None
    text = "" if value is None else str(value)
    if not text or len(text) > MAX_EVENT_ID_LENGTH:
        raise ValidationFailed(errors=[FieldError("event_id", "missing")])
    return text


def _from_setting(dotted: str) -> Callable[[Settings], SecretValue]:
    """A resolver for ``"shop.gateway_webhook_secret"``: a key of an app section, or of
    a built-in one."""

    def resolve(settings: Settings) -> SecretValue:
        first, _, rest = dotted.partition(".")
        value: Any = settings
        names = dotted.split(".")
        if first in settings.extensions and rest:
            value, names = settings.extensions[first], rest.split(".")
        try:
            for name in names:
                value = value[name] if isinstance(value, dict) else getattr(value, name)
        except (AttributeError, KeyError):
            raise ValueError(f"webhook secret setting {dotted} does not exist") from None
        if isinstance(value, str | SecretStr | list | tuple):
            return value
        raise ValueError(f"webhook secret setting {dotted} is not a secret or a list of them")

    return resolve


def _openapi(header: str) -> dict[str, Any]:
    return {
        "parameters": [
            {
                "name": header,
                "in": "header",
                "required": True,
                "description": 't=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">',
                "schema": {"type": "string"},
            }
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
    }
