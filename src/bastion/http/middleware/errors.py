"""Last line of defence: any exception that escaped becomes a 500 problem response."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bastion.observability.logs import get_logger
from bastion.types import ASGIApp, Message, Receive, Scope, Send

RenderError = Callable[[Scope, Receive, Send, BaseException], Awaitable[None]]


class ErrorMiddleware:
    """Answer escaped exceptions with problem+json and log them with the request id.

    Unlike Starlette's ServerErrorMiddleware this does not re-raise: the structured
    log line written here, with the request id and traceback, is the record, and a
    re-raise would make the server print the same traceback a second time, unbound
    from the request.

    Args:
        render: Writes the problem response for an exception.
    """

    def __init__(self, app: ASGIApp, *, render: RenderError) -> None:
        self.app = app
        self.render = render
        self.log = get_logger("bastion.errors")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def track(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, track)
        except Exception as exc:
            self.log.error(
                "unhandled_exception",
                method=scope.get("method"),
                path=scope.get("path"),
                exc_info=exc,
            )
            if not started:
                await self.render(scope, receive, send, exc)
