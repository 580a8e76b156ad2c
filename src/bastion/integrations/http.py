"""Outbound HTTP: one shared ``httpx.AsyncClient`` with time limits, retries and breakers.

Every call names its *dependency* (``"payments"``, ``"geocoder"``): the breaker and the
retry budget are kept per dependency. Final failures become the platform's errors:

* the breaker is open → 503 ``service_unavailable`` with ``Retry-After`` (peer not called);
* the last attempt timed out → 504 ``upstream_timeout``;
* the last attempt could not connect or got a 5xx → 502 ``upstream_failed``.

Other responses, 4xx included, are returned as they are: they are the caller's business.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import anyio
import httpx
import structlog

from bastion.errors.exceptions import (
    BastionError,
    ServiceUnavailable,
    UpstreamFailed,
    UpstreamTimeout,
)
from bastion.integrations.breaker import (
    BreakerStorage,
    CircuitBreaker,
    MemoryBreakerStorage,
    RedisBreakerStorage,
)
from bastion.observability.logs import get_logger
from bastion.observability.metrics import Metrics
from bastion.observability.tracing import Tracing
from bastion.settings.sections import IntegrationsSection

#: Statuses worth another attempt: the peer was overloaded or briefly broken.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to try again.

    Backoff before retry ``n`` (1-based) is uniform in ``[0, min(max, base * 2**(n-1))]``
    ("full jitter"); a ``Retry-After`` in the response replaces it, unless it is longer
    than ``backoff_max_s``, in which case there is no retry.
    """

    max_attempts: int = 3
    backoff_base_s: float = 0.2
    backoff_max_s: float = 5.0
    retry_statuses: frozenset[int] = field(default=RETRYABLE_STATUSES)

    @classmethod
    def from_settings(cls, settings: IntegrationsSection) -> RetryPolicy:
        return cls(settings.max_attempts, settings.backoff_base_s, settings.backoff_max_s)

    def backoff(self, retry: int) -> float:
        return random.uniform(0, min(self.backoff_max_s, self.backoff_base_s * 2 ** (retry - 1)))


#: Pass ``retry=NO_RETRY`` (or ``retry=None``) for calls that must not be repeated.
NO_RETRY = RetryPolicy(max_attempts=1)

_DEFAULT: Any = object()


class RetryBudget:
    """A token bucket per process: each call earns ``ratio`` of a retry, each retry costs one.

    Over time, retries add at most ``ratio`` extra calls; ``burst`` retries are there
    from the start. When a dependency is down, this stops retries from multiplying
    the load on it.
    """

    def __init__(self, ratio: float, burst: int) -> None:
        self.ratio = ratio
        self.burst = burst
        self.tokens = float(burst)

    def deposit(self) -> None:
        self.tokens = min(float(max(self.burst, 1)), self.tokens + self.ratio)

    def withdraw(self) -> bool:
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def current_request_id() -> str | None:
    """The id of the request being served (bound by the request-id middleware), if any."""
    value = structlog.contextvars.get_contextvars().get("request_id")
    return str(value) if value else None


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date; ``None`` when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


#: Methods whose repetition has the effect of one call (RFC 9110 §9.2.2).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class HttpClient:
    """``runtime.http``: outbound calls with time limits, retries and circuit breakers.

    Example::

        response = await ctx.services.http.request(
            "payments", "POST", "https://pay.example/charges", json=body,
            headers={"Idempotency-Key": key},
        )

    Args:
        settings: The ``[integrations]`` section.
        redis_url: ``[redis] url``, needed when ``breaker_storage = "redis"``.
        storage: Use this breaker storage instead of the configured one (tests).
        transport: An httpx transport for the shared client (tests).
        tracing: The runtime's tracing: a span per call, ``traceparent`` sent with it.
        metrics: The runtime's metrics: breaker states and transitions.
    """

    def __init__(
        self,
        settings: IntegrationsSection,
        *,
        redis_url: str | None = None,
        storage: BreakerStorage | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        tracing: Tracing | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        if storage is None:
            if settings.breaker_storage == "redis":
                if not redis_url:
                    raise ValueError("integrations.breaker_storage: 'redis' needs [redis] url")
                storage = RedisBreakerStorage(redis_url)
            else:
                storage = MemoryBreakerStorage()
        self.breaker = CircuitBreaker(
            storage,
            failure_threshold=settings.breaker_failure_threshold,
            reset_timeout_s=settings.breaker_reset_timeout_s,
            metrics=metrics,
        )
        self.retry = RetryPolicy.from_settings(settings)
        self._budgets: dict[str, RetryBudget] = {}
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s),
            transport=transport,
            follow_redirects=False,
        )
        if tracing is not None:
            tracing.instrument_httpx(self._client)
        self.log = get_logger("bastion.integrations")

    def budget(self, dependency: str) -> RetryBudget:
        budget = self._budgets.get(dependency)
        if budget is None:
            budget = RetryBudget(self.settings.retry_budget_ratio, self.settings.retry_budget_burst)
            self._budgets[dependency] = budget
        return budget

    async def request(
        self,
        dependency: str,
        method: str,
        url: str,
        *,
        retry: RetryPolicy | None = _DEFAULT,
        request_id: str | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send a request to ``dependency``; extra keyword arguments go to ``httpx``.

        Raises:
            ServiceUnavailable: the dependency's breaker is open (503, ``Retry-After``).
            UpstreamTimeout: the last attempt ran out of time (504).
            UpstreamFailed: the last attempt could not connect or got a 5xx (502).
        """
        headers = httpx.Headers(kwargs.pop("headers", None))
        if retry is _DEFAULT:
            # Repeating a POST or PATCH that may have reached the peer could do its work
            # twice (charge twice): by default only idempotent methods, or requests that
            # carry an Idempotency-Key the peer deduplicates on, are retried.
            safe = method.upper() in IDEMPOTENT_METHODS or "idempotency-key" in headers
            policy = self.retry if safe else NO_RETRY
        else:
            policy = retry or NO_RETRY
        rid = request_id or current_request_id()
        if rid and "x-request-id" not in headers:
            headers["X-Request-ID"] = rid
        budget = self.budget(dependency)
        budget.deposit()
        attempt = 0
        while True:
            attempt += 1
            wait = await self.breaker.allow(dependency)
            if wait is not None:
                raise ServiceUnavailable(
                    headers={"Retry-After": str(max(1, math.ceil(wait)))}, dependency=dependency
                )
            error: BastionError | None = None
            response: httpx.Response | None = None
            retry_after: float | None = None
            try:
                with anyio.fail_after(self.settings.timeout_s):
                    response = await self._client.request(method, url, headers=headers, **kwargs)
            except (httpx.TimeoutException, TimeoutError) as exc:
                error = UpstreamTimeout(dependency=dependency)
                reason = type(exc).__name__
            except httpx.TransportError as exc:
                error = UpstreamFailed(dependency=dependency)
                reason = type(exc).__name__
            else:
                status = response.status_code
                if status not in policy.retry_statuses:
                    await self.breaker.success(dependency)
                    return response
                reason = str(status)
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                if status >= 500:
                    error = UpstreamFailed(dependency=dependency)
            if error is not None:
                # 408 and 429 say nothing about the peer's health: they are not counted.
                await self.breaker.failure(dependency)
            give_up = (
                attempt >= policy.max_attempts
                or (retry_after is not None and retry_after > policy.backoff_max_s)
                or not budget.withdraw()
            )
            if give_up:
                self.log.warning(
                    "upstream_failed",
                    dependency=dependency,
                    method=method,
                    attempts=attempt,
                    reason=reason,
                )
                if error is not None:
                    if response is not None:
                        await response.aclose()
                    raise error
                assert response is not None  # 408/429 after the last attempt: the caller's
                return response
            delay = retry_after if retry_after is not None else policy.backoff(attempt)
            self.log.info(
                "upstream_retry",
                dependency=dependency,
                attempt=attempt,
                reason=reason,
                delay_s=round(delay, 3),
            )
            if response is not None:
                await response.aclose()
            await anyio.sleep(delay)

    async def get(self, dependency: str, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request(dependency, "GET", url, **kwargs)

    async def post(self, dependency: str, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request(dependency, "POST", url, **kwargs)

    async def aclose(self) -> None:
        """Close the shared client and the breaker storage (runtime shutdown)."""
        await self._client.aclose()
        await self.breaker.close()
