"""Query cache invalidated by commits (#5): results keyed by function, arguments and
caller, dropped when a commit writes a table they read."""

from __future__ import annotations

from bastion.cache.memory import QueryCache, cache_key, parse_ttl

__all__ = ["QueryCache", "cache_key", "parse_ttl"]
