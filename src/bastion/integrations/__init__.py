"""Outbound HTTP to other services: time limits, retries and circuit breakers."""

from __future__ import annotations

from bastion.integrations.breaker import (
    BreakerSnapshot,
    BreakerStorage,
    BreakerUnavailable,
    CircuitBreaker,
    MemoryBreakerStorage,
    RedisBreakerStorage,
)
from bastion.integrations.http import NO_RETRY, RETRYABLE_STATUSES, HttpClient, RetryPolicy

__all__ = [
    "NO_RETRY",
    "RETRYABLE_STATUSES",
    "BreakerSnapshot",
    "BreakerStorage",
    "BreakerUnavailable",
    "CircuitBreaker",
    "HttpClient",
    "MemoryBreakerStorage",
    "RedisBreakerStorage",
    "RetryPolicy",
]
