"""Identity and access: passwords now; sessions, tokens, API keys and OIDC follow (#3)."""

from __future__ import annotations

from bastion.auth.passwords import Passwords, common_passwords
from bastion.auth.principal import Principal
from bastion.auth.sessions import SessionRecord, SessionStore
from bastion.auth.users import (
    User,
    create_user,
    find_user,
    normalize_email,
    principal_for,
)

__all__ = [
    "Passwords",
    "Principal",
    "SessionRecord",
    "SessionStore",
    "User",
    "common_passwords",
    "create_user",
    "find_user",
    "normalize_email",
    "principal_for",
]
