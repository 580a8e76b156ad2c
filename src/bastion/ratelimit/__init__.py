"""Rate limiting: windowed limits from the ``limits`` library behind one small interface."""

from __future__ import annotations

from bastion.ratelimit.limiter import (
    Decision,
    Limiter,
    LimiterUnavailable,
    parse_limits,
    storage_for,
    tightest,
)

__all__ = ["Decision", "Limiter", "LimiterUnavailable", "parse_limits", "storage_for", "tightest"]
