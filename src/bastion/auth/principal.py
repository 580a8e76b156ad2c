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
        """Whether the permission is held as such (``write:own`` is not ``write:all``)."""
        return permission in self.permissions

    def allows(self, permission: str) -> bool:
        """Whether a function requiring ``permission`` may run: ``x:all`` covers ``x:own``
        and ``x:public``, since whoever may touch everything may touch their own."""
        if permission in self.permissions:
            return True
        action, _, scope = permission.partition(":")
        return scope in ("own", "public") and f"{action}:all" in self.permissions
