"""Users: normalized unique emails, hashed passwords, roles to permissions."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bastion import App, Runtime
from bastion.auth import User, create_user, find_user, normalize_email, principal_for
from bastion.errors import BastionError, ValidationFailed
from tests.apps import app


@pytest.fixture
def bastion_app() -> App:
    return app


@pytest.fixture
def bastion_settings_overrides() -> dict[str, object]:
    return {"auth": {"argon2_memory_kib": 8192, "argon2_time_cost": 1, "argon2_parallelism": 1}}


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("  Ann@Example.COM ", "ann@example.com"),
        ("bob@BÜCHER.example", "bob@bücher.example"),
    ],
)
def test_emails_are_normalized(raw: str, normalized: str) -> None:
    assert normalize_email(raw) == normalized


@pytest.mark.parametrize("raw", ["", "no-at-sign", "a@b", "a@@example.com", "a b@example.com"])
def test_invalid_emails_are_a_field_error(raw: str) -> None:
    with pytest.raises(ValidationFailed) as error:
        normalize_email(raw)
    assert [(e.field, e.code) for e in error.value.errors] == [("email", "invalid_email")]


async def test_create_and_find_a_user(runtime: Runtime) -> None:
    with runtime.database.transaction() as session:
        user = create_user(
            session,
            runtime.passwords,
            email="Ann@Example.com",
            password="violet-lantern-orbit-42",
            name="Ann",
            roles=["admin", "user"],
            known_roles=runtime.settings.auth.roles,
        )
        user_id = user.id
    with runtime.database.read_transaction() as session:
        found = find_user(session, "ANN@example.com")
        assert found is not None
        assert (found.id, found.email, found.roles, found.is_active, found.is_banned) == (
            user_id,
            "ann@example.com",
            ["admin", "user"],
            True,
            False,
        )
        assert found.created_at.tzinfo is not None
        assert runtime.passwords.verify(found.password_hash, "violet-lantern-orbit-42")
        assert find_user(session, "nobody@example.com") is None
        assert find_user(session, "not an email") is None


async def test_duplicate_emails_and_weak_passwords_write_nothing(runtime: Runtime) -> None:
    with runtime.database.transaction() as session:
        create_user(
            session, runtime.passwords, email="a@example.com", password="violet-lantern-orbit-42"
        )
    for email, password, code in (
        ("A@EXAMPLE.COM", "violet-lantern-orbit-42", "email_taken"),
        ("b@example.com", "qwertyuiop", "weak_password"),
    ):
        with pytest.raises(BastionError) as error, runtime.database.transaction() as session:
            create_user(session, runtime.passwords, email=email, password=password)
        assert error.value.error_code == code
    with runtime.database.read_transaction() as session:
        assert list(session.scalars(select(User.email))) == ["a@example.com"]


def test_roles_map_to_permissions() -> None:
    user = User(id=7, email="a@example.com", roles=["admin", "auditor"])
    roles = {"admin": ["read:all", "write:all"], "user": ["read:public"], "auditor": ["read:all"]}
    principal = principal_for(user, roles)
    assert principal.id == "7"
    assert principal.roles == {"admin", "auditor"}
    assert principal.permissions == {"read:all", "write:all"}
    assert (
        principal_for(User(id=8, email="b@example.com", roles=["ghost"]), roles).permissions
        == set()
    )
