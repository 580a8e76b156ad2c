"""Idempotency keys: run an unsafe request once, replay its response to retries."""

from __future__ import annotations

from bastion.idempotency.store import (
    Begin,
    IdempotencyRecord,
    IdempotencyStore,
    InProgress,
    Proceed,
    Replay,
    Reused,
    StoredResponse,
)

__all__ = [
    "Begin",
    "IdempotencyRecord",
    "IdempotencyStore",
    "InProgress",
    "Proceed",
    "Replay",
    "Reused",
    "StoredResponse",
]
