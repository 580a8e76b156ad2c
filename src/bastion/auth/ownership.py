"""Ownership checks for ``:own`` permissions.

Someone else's object answers 404, not 403: a 403 would confirm that the id
exists, which is itself a leak (IDOR probing).
"""

from __future__ import annotations

from typing import TypeVar

from bastion.auth.principal import Principal
from bastion.errors import NotAuthenticated, NotFound

T = TypeVar("T")


def owned(
    obj: T | None,
    user: Principal | None,
    *,
    owner_field: str = "user_id",
    action: str = "read",
) -> T:
    """``obj`` when ``user`` owns it (or holds ``<action>:all``); otherwise ``not_found``.

    Example::

        key = owned(session.get(Note, note_id), ctx.user, action="write")
    """
    if user is None:
        raise NotAuthenticated()
    if obj is None:
        raise NotFound()
    if str(getattr(obj, owner_field)) != user.id and not user.has(f"{action}:all"):
        raise NotFound()
    return obj
