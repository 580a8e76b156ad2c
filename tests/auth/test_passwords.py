"""argon2id hashing, rehash on parameter change, equal work for unknown users, policy."""

from __future__ import annotations

import pytest

from bastion.auth import Passwords, common_passwords
from bastion.errors import BastionError, ErrorCatalog
from bastion.settings.sections import AuthSection

# Cheap parameters keep the suite fast; the production cost is argon2-cffi's default.
FAST = AuthSection(argon2_time_cost=1, argon2_memory_kib=8_192, argon2_parallelism=1)


def test_hash_and_verify() -> None:
    passwords = Passwords(FAST)
    stored = passwords.hash("correct horse battery staple")
    assert stored.startswith("$argon2id$")
    assert passwords.verify(stored, "correct horse battery staple")
    assert not passwords.verify(stored, "correct horse battery stapl")
    assert not passwords.verify("not-a-hash", "anything")


def test_an_unknown_user_is_verified_against_a_dummy_hash_and_fails() -> None:
    passwords = Passwords(FAST)
    assert not passwords.verify(None, "bastion-dummy-password-for-equal-work")
    assert not passwords.verify(None, "whatever")


def test_hashes_made_with_other_parameters_need_a_rehash() -> None:
    old = Passwords(FAST).hash("a long enough password")
    stronger = Passwords(
        AuthSection(argon2_time_cost=2, argon2_memory_kib=8_192, argon2_parallelism=1)
    )
    assert stronger.verify(old, "a long enough password"), "old hashes still verify"
    assert stronger.needs_rehash(old)
    assert not stronger.needs_rehash(stronger.hash("a long enough password"))
    assert stronger.needs_rehash("garbage")


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short", "password_too_short"),
        ("x" * 129, "password_too_long"),
        ("1234567890", "password_too_common"),
        ("Password123", "password_too_common"),
    ],
)
def test_the_policy_refuses_weak_passwords(password: str, reason: str) -> None:
    with pytest.raises(BastionError) as error:
        Passwords(FAST).check_policy(password)
    assert error.value.error_code == "weak_password"
    assert [(e.field, e.code) for e in error.value.errors] == [("password", reason)]


def test_the_policy_accepts_a_long_uncommon_password() -> None:
    Passwords(FAST).check_policy("violet-lantern-orbit-42")
    assert len(common_passwords()) > 19_000


@pytest.mark.parametrize("locale", ["en", "es", "tr"])
def test_weak_password_messages_are_translated(locale: str) -> None:
    catalog = ErrorCatalog.with_platform_messages()
    assert catalog.status_of("weak_password") == 422
    detail = catalog.render("weak_password", locale, {"min_length": 10, "max_length": 128}).detail
    assert "10" in detail
    assert "128" in detail
    for code in ("password_too_short", "password_too_long", "password_too_common"):
        assert catalog.render_field(code, locale, {"min_length": 10, "max_length": 128})
