"""``POST {api_prefix}/client-logs``: browsers and mobile apps report their errors and logs.

The endpoint checks who may post and how often, reads at most ``[client_logs]
max_body_bytes``, validates the batch and enqueues one ingest job for it; the job
writes the rows (``bastion.monitoring.client_logs``). The answer is 202
``{"accepted": n}`` as soon as the job is queued.

Anonymous callers are allowed unless ``allow_anonymous`` is off, with their own,
stricter limit per client address. A signed-in browser posts with its session
cookie, so it sends ``X-CSRF-Token`` like any other cookie-authenticated write.
"""

from __future__ import annotations

import json
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from bastion.db.database import Database
from bastion.errors import (
    BadRequest,
    FieldError,
    NotAuthenticated,
    PayloadTooLarge,
    ValidationFailed,
)
from bastion.http.middleware.rate_limit import FunctionLimits
from bastion.http.state import client_address, header, request_id_of, user_of
from bastion.jobs import Job
from bastion.jobs import store as job_store
from bastion.monitoring.client_logs import ClientLogBatch, clip
from bastion.observability.metrics import Metrics
from bastion.observability.tracing import current_trace_id
from bastion.ratelimit import Limiter, parse_limits
from bastion.settings.sections import Settings

#: The name its rate limits are counted under (``fn:client_logs:<caller>``).
LIMIT_NAME = "client_logs"


class Accepted(BaseModel):
    """How many entries were queued for storage."""

    accepted: int


def build_client_log_router(
    *,
    ingest: Job[Any],
    database: Database,
    settings: Settings,
    limiter: Limiter | None,
    metrics: Metrics | None = None,
) -> APIRouter:
    """The route, enqueueing ``ingest`` per batch; ``limiter`` is ``None`` when rate
    limiting is off."""
    section = settings.client_logs
    limits = FunctionLimits(limiter, metrics) if limiter is not None else None
    user_limits = parse_limits([section.rate_limit])
    anonymous_limits = parse_limits([section.anonymous_rate_limit])
    router = APIRouter(tags=["monitoring"])

    @router.post(
        "/client-logs",
        status_code=202,
        response_model=Accepted,
        openapi_extra={"requestBody": _request_body()},
    )
    async def client_logs(request: Request) -> Accepted:
        """Queue a batch of client log entries for storage.

        Entries are stored with the caller's user id, address and user agent, and
        the request id and trace id each entry names, so a client error can be
        followed into the server's logs. Messages and stacks longer than the limits
        are cut, not refused.
        """
        scope = request.scope
        user = user_of(scope)
        if user is None and not section.allow_anonymous:
            raise NotAuthenticated()
        if limits is not None:
            chosen = user_limits if user is not None else anonymous_limits
            await limits.check(LIMIT_NAME, chosen, scope)
        batch = _parse(await _read(request, section.max_body_bytes))
        if len(batch.entries) > section.max_entries:
            raise ValidationFailed(
                errors=[
                    FieldError(
                        "entries",
                        "too_long",
                        params={"max_length": section.max_entries},
                    )
                ]
            )
        entries = [
            clip(
                entry,
                max_message_chars=section.max_message_chars,
                max_stack_chars=section.max_stack_chars,
            )
            for entry in batch.entries
        ]
        request_id = request_id_of(scope) or None
        trace_id = current_trace_id()

        def enqueue() -> None:
            with database.transaction() as session:
                # The job row carries the request id too: its logs join the request's.
                job_store.enqueue(
                    session,
                    ingest.spec,
                    {
                        "entries": entries,
                        "user_id": user.id if user is not None else None,
                        "client_ip": client_address(scope),
                        "user_agent": header(scope, b"user-agent"),
                        "request_id": request_id,
                        "trace_id": trace_id,
                    },
                    request_id=request_id,
                )

        await anyio.to_thread.run_sync(enqueue)
        return Accepted(accepted=len(entries))

    return router


async def _read(request: Request, max_bytes: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``max_bytes``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(limit=max_bytes)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise PayloadTooLarge(limit=max_bytes)
    return bytes(body)


def _parse(raw: bytes) -> ClientLogBatch:
    try:
        data = json.loads(raw)
    except ValueError:
        raise BadRequest("invalid_json") from None
    try:
        return ClientLogBatch.model_validate(data)
    except ValidationError as exc:
        # Rendered like FastAPI's own body errors: field paths such as entries[0].level.
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        ) from None


def _request_body() -> dict[str, Any]:
    # The body is read by hand (to cap it below server.max_body_bytes), so FastAPI does
    # not document it; the batch's schema is inlined here instead.
    schema = ClientLogBatch.model_json_schema()
    entry = schema.pop("$defs")["ClientLogEntry"]
    schema["properties"]["entries"]["items"] = entry
    return {"required": True, "content": {"application/json": {"schema": schema}}}
