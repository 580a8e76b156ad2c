"""Query cache invalidated by commits (#5): results keyed by function, arguments and
caller, dropped when a commit writes a table they read."""

from __future__ import annotations

from bastion.cache.base import QueryCacheBackend
from bastion.cache.memory import QueryCache, cache_key, parse_ttl
from bastion.settings.sections import CacheSection

__all__ = ["QueryCache", "QueryCacheBackend", "build_query_cache", "cache_key", "parse_ttl"]


def build_query_cache(
    settings: CacheSection, *, redis_url: str | None, app_name: str
) -> QueryCacheBackend:
    """The backend ``settings.backend`` names; Redis keys start with the prefix and ``app_name``.

    Raises:
        ValueError: ``backend = "redis"`` without a Redis URL.
    """
    if settings.backend == "memory":
        return QueryCache(settings.max_entries)
    if not redis_url:
        raise ValueError("cache.backend: 'redis' needs [redis] url")
    from bastion.cache.redis import RedisQueryCache

    return RedisQueryCache(
        redis_url,
        namespace=f"{settings.prefix}{app_name}:",
        timeout_s=settings.redis_timeout_s,
        retry_s=settings.redis_retry_s,
    )
