"""Sessions in process memory: one process only (development, tests)."""

from __future__ import annotations

import copy

from bastion.auth.sessions.base import SessionRecord


class InMemorySessionStore:
    """A dict of sessions; each process has its own, so do not use it with several workers."""

    def __init__(self) -> None:
        self._records: dict[str, SessionRecord] = {}

    async def save(self, record: SessionRecord) -> None:
        self._records[record.key] = copy.deepcopy(record)

    async def load(self, key: str) -> SessionRecord | None:
        record = self._records.get(key)
        return copy.deepcopy(record) if record is not None else None

    async def delete(self, key: str) -> None:
        self._records.pop(key, None)

    async def delete_for_user(self, user_id: str) -> int:
        keys = [key for key, record in self._records.items() if record.user_id == user_id]
        for key in keys:
            del self._records[key]
        return len(keys)
