"""Identity and access: passwords now; sessions, tokens, API keys and OIDC follow (#3)."""

from __future__ import annotations

from bastion.auth.passwords import Passwords, common_passwords

__all__ = ["Passwords", "common_passwords"]
