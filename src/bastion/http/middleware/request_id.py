"""Give every request an id, echo it in ``X-Request-ID`` and bind it into every log line."""

from __future__ import annotations

import re
import uuid

import structlog

from bastion.http.state import REQUEST_ID, header, state
from bastion.types import ASGIApp, Message, Receive, Scope, Send

# Accepted as-is from clients: short, printable, no characters that could forge
# log fields or headers.
_WELL_FORMED = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


class RequestIdMiddleware:
    """Accept a well-formed ``X-Request-ID`` or generate one.

    Outermost in the stack, so that even a response written by the error middleware
    carries the id.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = header(scope, b"x-request-id")
        request_id = incoming if incoming and _WELL_FORMED.fullmatch(incoming) else uuid.uuid4().hex
        state(scope)[REQUEST_ID] = request_id
        encoded = request_id.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", encoded)]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            await self.app(scope, receive, send_with_id)
