"""Password hashing (argon2id via argon2-cffi) and the password policy.

The common-password list is Django's (20,000 entries, lowercased, created by Royce
Williams; BSD licence, see ``data/README.md``).
"""

from __future__ import annotations

import gzip
from functools import cache, cached_property
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from bastion.errors import BastionError, FieldError
from bastion.settings.sections import AuthSection

_COMMON = Path(__file__).parent / "data" / "common-passwords.txt.gz"


@cache
def common_passwords() -> frozenset[str]:
    with gzip.open(_COMMON, "rt", encoding="utf-8") as lines:
        return frozenset(line.strip() for line in lines if line.strip())


class Passwords:
    """Hashes and verifies passwords with the configured argon2id cost.

    Args:
        settings: The ``[auth]`` section (cost parameters and length limits).
    """

    def __init__(self, settings: AuthSection) -> None:
        self.settings = settings
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        )

    @cached_property
    def _dummy(self) -> str:
        # Verifying against this hash when a user does not exist makes a login for an
        # unknown email cost the same as one with a wrong password. Made on first use:
        # building a runtime should not cost a full hash.
        return self._hasher.hash("bastion-dummy-password-for-equal-work")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches; ``None`` (no such user) does the same work, then fails."""
        try:
            return (
                self._hasher.verify(stored_hash or self._dummy, password)
                and stored_hash is not None
            )
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        """Whether a hash was made with other parameters than the current ones (rehash at login)."""
        try:
            return self._hasher.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return True

    def check_policy(self, password: str, *, field: str = "password") -> None:
        """Refuse a weak password with 422 ``weak_password`` and the reason as a field error.

        Raises:
            BastionError: ``weak_password``, with field code ``password_too_short``,
                ``password_too_long`` or ``password_too_common``.
        """
        limits: dict[str, Any] = {
            "min_length": self.settings.password_min_length,
            "max_length": self.settings.password_max_length,
        }
        if len(password) < self.settings.password_min_length:
            reason = "password_too_short"
        elif len(password) > self.settings.password_max_length:
            reason = "password_too_long"
        elif password.lower().strip() in common_passwords():
            reason = "password_too_common"
        else:
            return
        raise BastionError(
            "weak_password", errors=[FieldError(field, reason, params=limits)], **limits
        )
