"""Who is calling: the identity and permissions a request or job runs as."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user (or API key) with roles and the permissions they grant.

    A permission is ``action:scope`` (``write:all``, ``read:public``, ``write:own``).
    """

    id: str
    roles: frozenset[str] = frozenset()
    permissions: frozenset[str] = frozenset()

    def has(self, permission: str) -> bool:
        return permission in self.permissions
