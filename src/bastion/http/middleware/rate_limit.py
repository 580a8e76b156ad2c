"""Rate limits on every request, keyed by who is calling, with ``RateLimit-*`` headers and 429s.

Each request is counted once against the policy of its caller, as authentication
resolved it (this middleware runs inside it):

- an API key: ``api_key_limits`` under ``key:<api key id>``;
- a user (session or bearer token): ``user_limits`` under ``user:<user id>``;
- anyone else: ``default_limits`` under ``ip:<client address>``;

and, when ``global_limits`` are set, against them under ``global``. Signed-in callers
are counted by who they are, not where they call from: colleagues behind one NAT do
not share a budget, and a user cannot get a fresh one by changing networks.

Functions declared with ``rate_limit=`` are checked by their endpoint through
:class:`FunctionLimits`, which leaves its decision in the request's state; the
response carries the headers of the tightest decision of the request.
"""

from __future__ import annotations

from collections.abc import Sequence

from limits import RateLimitItem

from bastion.auth.service import Identity
from bastion.errors import RateLimited, ServiceUnavailable
from bastion.http.middleware.errors import RenderError
from bastion.http.state import caller_of, identity_of, state
from bastion.observability.logs import get_logger
from bastion.observability.metrics import Metrics
from bastion.ratelimit import Decision, Limiter, LimiterUnavailable, tightest
from bastion.types import ASGIApp, Message, Receive, Scope, Send

#: Where a function's own limit leaves its decision for the response headers.
FUNCTION_DECISION = "rate_limit_function_decision"
GLOBAL_KEY = "global"


class RateLimitMiddleware:
    """Counts each request against its caller's limits and the global ceiling.

    The client address is the one :class:`ClientIpMiddleware` resolved, so a
    client behind a trusted proxy gets its own bucket and cannot pick another.

    Args:
        limiter: The runtime's limiter.
        render: Writes a problem response (429, or 503 when failing closed).
        metrics: Counts the 429s by the kind of limit that refused.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: Limiter,
        render: RenderError,
        metrics: Metrics | None = None,
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.metrics = metrics
        self.render = render
        self.exempt = tuple(limiter.settings.exempt_paths)
        self.fail_open = limiter.settings.fail_open
        self.log = get_logger("bastion.ratelimit")
        self.policies: dict[str, Sequence[RateLimitItem]] = {
            "key": limiter.api_key_limits,
            "user": limiter.user_limits,
            "ip": limiter.default_limits,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        kind, key = caller_key(scope)
        try:
            decision = await self.limiter.check(key, self.policies[kind])
            # A caller already refused is not counted against the ceiling as well.
            if self.limiter.global_limits and (decision is None or decision.allowed):
                ceiling = await self.limiter.check(GLOBAL_KEY, self.limiter.global_limits)
                if ceiling is not None and tightest(decision, ceiling) is ceiling:
                    kind, key, decision = GLOBAL_KEY, GLOBAL_KEY, ceiling
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
        if decision is not None and not decision.allowed:
            self.log.info("rate_limited", kind=kind, key=key, limit=decision.limit)
            if self.metrics is not None:
                self.metrics.rate_limited(kind)
            await self.render(
                scope, receive, _with(send, _headers(decision)), RateLimited(decision.reset_after_s)
            )
            return
        await self.app(scope, receive, _with_tightest(send, state(scope), decision))


def caller_key(scope: Scope) -> tuple[str, str]:
    """The kind of caller (``key``, ``user`` or ``ip``) and its bucket's key.

    Only ids and addresses go into keys (and logs), never a credential.
    """
    identity = identity_of(scope)
    if (
        isinstance(identity, Identity)
        and identity.method == "api_key"
        and identity.api_key_id is not None
    ):
        return "key", f"key:{identity.api_key_id}"
    return caller_of(scope)


class FunctionLimits:
    """Checks the limits functions declare (``rate_limit="10/minute"``) for their endpoints.

    A function is counted per caller: the user (all of their API keys together, as
    the limit protects what the function costs), else the client address.

    Args:
        limiter: The runtime's limiter.
        metrics: Counts the 429s (as ``function``).
    """

    def __init__(self, limiter: Limiter, metrics: Metrics | None = None) -> None:
        self.limiter = limiter
        self.metrics = metrics
        self.fail_open = limiter.settings.fail_open
        self.log = get_logger("bastion.ratelimit")

    async def check(self, function: str, limits: Sequence[RateLimitItem], scope: Scope) -> None:
        """Count one call of ``function`` by the request's caller.

        Raises:
            RateLimited: the caller used the function up (``Retry-After``).
            ServiceUnavailable: the storage is down and ``fail_open`` is off.
        """
        key = f"fn:{function}:{caller_of(scope)[1]}"
        try:
            decision = await self.limiter.check(key, limits)
        except LimiterUnavailable as exc:
            self.log.warning(
                "rate_limit_storage_unavailable", error=str(exc), fail_open=self.fail_open
            )
            if self.fail_open:
                return
            raise ServiceUnavailable(headers={"Retry-After": "5"}) from exc
        if decision is None:
            return
        state(scope)[FUNCTION_DECISION] = decision
        if not decision.allowed:
            self.log.info(
                "rate_limited", kind="function", function=function, key=key, limit=decision.limit
            )
            if self.metrics is not None:
                self.metrics.rate_limited("function")
            raise RateLimited(decision.reset_after_s)


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


def _with_tightest(send: Send, values: dict[str, object], decision: Decision | None) -> Send:
    # The function's decision, if any, is known only once the endpoint has run.
    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            function = values.get(FUNCTION_DECISION)
            chosen = tightest(decision, function if isinstance(function, Decision) else None)
            if chosen is not None:
                message["headers"] = [*message.get("headers", ()), *_headers(chosen)]
        await send(message)

    return send_with_headers
