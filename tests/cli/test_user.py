"""``bastion user create``: admin creation with policy, roles and duplicate checks."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from typer.testing import Result

from tests.cli.conftest import Runner

FAST_HASH = {"BASTION_AUTH_ARGON2_MEMORY_KIB": "8192", "BASTION_AUTH_ARGON2_TIME_COST": "1"}


def create(bastion: Runner, email: str, *options: str, password: str | None = None) -> Result:
    """``bastion user create --email EMAIL ...``, the password on stdin when given."""
    if password is None:
        return bastion("user", "create", "--email", email, *options, env=FAST_HASH)
    return bastion(
        "user",
        "create",
        "--email",
        email,
        *options,
        "--password-stdin",
        env=FAST_HASH,
        input=f"{password}\n",
    )


def users(project: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(project / "var" / "cliapp.db") as connection:
        return connection.execute(
            "SELECT email, roles, password_hash FROM bastion_users"
        ).fetchall()


def test_create_an_admin_from_stdin(bastion: Runner, project: Path) -> None:
    assert bastion("migrate", "up").exit_code == 0
    result = create(bastion, "Admin@Example.COM", "--admin", password="violet-lantern-orbit-42")
    assert result.exit_code == 0, result.output
    assert "with roles admin" in result.stdout
    [(email, roles, password_hash)] = users(project)
    assert email == "admin@example.com"
    assert roles == '["admin"]'
    assert password_hash.startswith("$argon2id$")
    assert "violet-lantern-orbit-42" not in result.output


def test_generated_password_is_shown_once_and_works(bastion: Runner, project: Path) -> None:
    from argon2 import PasswordHasher

    assert bastion("migrate", "up").exit_code == 0
    result = create(bastion, "ops@example.com", "--generate")
    assert result.exit_code == 0, result.output
    password = result.stdout.split("password (shown once): ")[1].strip()
    assert PasswordHasher().verify(users(project)[0][2], password)


def test_weak_passwords_duplicates_and_unknown_roles_are_refused(
    bastion: Runner, project: Path
) -> None:
    assert bastion("migrate", "up").exit_code == 0
    weak = create(bastion, "a@example.com", password="password123")
    assert weak.exit_code == 1
    assert "weak_password" in weak.stderr
    assert "too common" in weak.stderr
    ok = create(bastion, "a@example.com", password="violet-lantern-orbit-42")
    assert ok.exit_code == 0, ok.output
    again = create(bastion, "A@EXAMPLE.com", password="violet-lantern-orbit-42")
    assert again.exit_code == 1
    assert "email_taken" in again.stderr
    role = create(bastion, "b@example.com", "--role", "wizard", "--generate")
    assert role.exit_code == 1
    assert "There is no role named wizard" in role.stderr
    bad = create(bastion, "not-an-email", "--generate")
    assert bad.exit_code == 1
    assert "valid email" in bad.stderr
    assert len(users(project)) == 1
