"""Identity and access: passwords now; sessions, tokens, API keys and OIDC follow (#3)."""

from __future__ import annotations

from bastion.auth.identities import UserIdentity, link_identity
from bastion.auth.oidc import OidcClient, OidcIdentity, OidcStart
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
    "OidcClient",
    "OidcIdentity",
    "OidcStart",
    "Passwords",
    "Principal",
    "SessionRecord",
    "SessionStore",
    "User",
    "UserIdentity",
    "common_passwords",
    "create_user",
    "find_user",
    "link_identity",
    "normalize_email",
    "principal_for",
]
