"""Refuse request bodies above the configured size with 413 ``payload_too_large``."""

from __future__ import annotations

from starlette.exceptions import HTTPException

from bastion.http.state import header
from bastion.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimitMiddleware:
    """Checks ``Content-Length`` up front and counts streamed (chunked) bodies as they arrive.

    Args:
        max_bytes: The largest body accepted.
        reject: The ASGI app that answers a request refused before it was read.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, reject: ASGIApp) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.reject = reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            scope.setdefault("state", {})["body_limit"] = self.max_bytes
            await self.reject(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # An HTTPException passes through FastAPI's body parsing unchanged
                    # and reaches the problem renderer as a 413.
                    raise HTTPException(413)
            return message

        await self.app(scope, counting_receive, send)
