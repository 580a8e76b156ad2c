"""Per-client rate limits on every request, with ``RateLimit-*`` headers and 429s."""

from __future__ import annotations

from bastion.errors import RateLimited, ServiceUnavailable
from bastion.http.middleware.errors import RenderError
from bastion.observability.logs import get_logger
from bastion.ratelimit import Decision, Limiter, LimiterUnavailable
from bastion.types import ASGIApp, Message, Receive, Scope, Send


class RateLimitMiddleware:
    """Counts each request against the default limits under the client's address.

    The client address is the one :class:`ClientIpMiddleware` resolved, so a
    client behind a trusted proxy gets its own bucket and cannot pick another.

    Args:
        limiter: The runtime's limiter.
        render: Writes a problem response (429, or 503 when failing closed).
    """

    def __init__(self, app: ASGIApp, *, limiter: Limiter, render: RenderError) -> None:
        self.app = app
        self.limiter = limiter
        self.render = render
        self.exempt = tuple(limiter.settings.exempt_paths)
        self.fail_open = limiter.settings.fail_open
        self.log = get_logger("bastion.ratelimit")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        key = f"ip:{client[0] if client else 'unknown'}"
        try:
            decision = await self.limiter.check(key, self.limiter.default_limits)
        except LimiterUnavailable as exc:
            self.log.warning(
                "rate_limit_storage_unavailable", error=str(exc), fail_open=self.fail_open
            )
            if self.fail_open:
                await self.app(scope, receive, send)
            else:
                await self.render(
                    scope, receive, send, ServiceUnavailable(headers={"Retry-After": "5"})
                )
            return
        if decision is None:
            await self.app(scope, receive, send)
            return
        headers = _headers(decision)
        if not decision.allowed:
            self.log.info("rate_limited", key=key, limit=decision.limit)
            await self.render(
                scope, receive, _with(send, headers), RateLimited(decision.reset_after_s)
            )
            return
        await self.app(scope, receive, _with(send, headers))


def _headers(decision: Decision) -> list[tuple[bytes, bytes]]:
    return [
        (b"ratelimit-limit", str(decision.limit).encode()),
        (b"ratelimit-remaining", str(decision.remaining).encode()),
        (b"ratelimit-reset", str(decision.reset_after_s).encode()),
    ]


def _with(send: Send, headers: list[tuple[bytes, bytes]]) -> Send:
    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), *headers]
        await send(message)

    return send_with_headers
