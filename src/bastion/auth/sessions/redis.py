"""Sessions in Redis: shared by many processes and machines, expired by Redis itself."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from bastion.auth.sessions.base import SessionRecord


class RedisSessionStore:
    """``<prefix>session:<key>`` holds the session as JSON with a TTL at its expiry;
    ``<prefix>user:<id>`` is the set of a user's session keys, for ban and logout-all.

    Args:
        client: A ``redis.asyncio.Redis`` client.
        prefix: Key prefix, so several apps can share one Redis.
    """

    def __init__(self, client: Any, *, prefix: str = "bastion:") -> None:
        self.client = client
        self.prefix = prefix

    def _session(self, key: str) -> str:
        return f"{self.prefix}session:{key}"

    def _user(self, user_id: str) -> str:
        return f"{self.prefix}user:{user_id}"

    async def save(self, record: SessionRecord) -> None:
        ttl = math.ceil((record.expires_at() - datetime.now(UTC)).total_seconds())
        payload = json.dumps(
            {
                "user_id": record.user_id,
                "data": record.data,
                "created_at": record.created_at.isoformat(),
                "last_seen_at": record.last_seen_at.isoformat(),
                "idle_s": record.idle_timeout.total_seconds(),
                "absolute_s": record.absolute_timeout.total_seconds(),
            }
        )
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.set(self._session(record.key), payload, ex=max(ttl, 1))
            if record.user_id is not None:
                # The index lives as long as the longest session it can hold, so it never
                # outgrows the sessions it points at.
                pipe.sadd(self._user(record.user_id), record.key)
                pipe.expire(
                    self._user(record.user_id), math.ceil(record.absolute_timeout.total_seconds())
                )
            await pipe.execute()

    async def load(self, key: str) -> SessionRecord | None:
        raw = await self.client.get(self._session(key))
        if raw is None:
            return None
        value = json.loads(raw)
        return SessionRecord(
            key=key,
            user_id=value["user_id"],
            data=value["data"],
            created_at=datetime.fromisoformat(value["created_at"]),
            last_seen_at=datetime.fromisoformat(value["last_seen_at"]),
            idle_timeout=timedelta(seconds=value["idle_s"]),
            absolute_timeout=timedelta(seconds=value["absolute_s"]),
        )

    async def delete(self, key: str) -> None:
        await self.client.delete(self._session(key))

    async def delete_for_user(self, user_id: str) -> int:
        keys = await self.client.smembers(self._user(user_id))
        if not keys:
            return 0
        names = [self._session(k.decode() if isinstance(k, bytes) else k) for k in keys]
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(*names)
            pipe.delete(self._user(user_id))
            deleted, _ = await pipe.execute()
        return int(deleted)
