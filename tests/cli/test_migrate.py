"""``bastion migrate``: make, up, status and down on a SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.cli.conftest import Runner, platform_head


def tables(project: Path) -> set[str]:
    with sqlite3.connect(project / "var" / "cliapp.db") as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows}


def test_make_up_status_down(bastion: Runner, project: Path) -> None:
    # A fresh database: everything is pending, and status says so with exit 1.
    status = bastion("migrate", "status")
    assert status.exit_code == 1, status.output
    assert platform_head() in status.stdout
    assert "pending" in status.stdout

    # Autogenerate compares with the database, which must be up to date first.
    early = bastion("migrate", "make", "-m", "create items")
    assert early.exit_code == 1
    assert "not up to date" in early.stderr
    assert "bastion migrate up" in early.stderr

    up = bastion("migrate", "up")
    assert up.exit_code == 0, up.output
    assert "Applied bastion_0001" in up.stdout
    assert platform_head() in up.stdout.splitlines()[0]

    made = bastion("migrate", "make", "-m", "create items")
    assert made.exit_code == 0, made.output
    [revision] = (project / "cliapp" / "migrations").glob("*.py")
    source = revision.read_text(encoding="utf-8")
    assert "op.create_table(" in source
    assert "'items'" in source or '"items"' in source
    assert "branch_labels" in source
    assert str(revision) in made.stdout.replace("\n", "")

    assert bastion("migrate", "status").exit_code == 1

    up = bastion("migrate", "up")
    assert up.exit_code == 0, up.output
    assert "Applied cliapp_0001" in up.stdout
    assert "items" in tables(project)

    status = bastion("migrate", "status")
    assert status.exit_code == 0, status.output
    assert "Up to date" in status.stdout
    assert "pending" not in status.stdout

    again = bastion("migrate", "up")
    assert again.exit_code == 0
    assert "Already up to date" in again.stdout

    down = bastion("migrate", "down")
    assert down.exit_code == 0, down.output
    assert "Reverted cliapp_0001" in down.stdout
    assert "items" not in tables(project)
    # Only the app's branch steps back; the platform's tables stay.
    assert "bastion_error_log" in tables(project)
    assert bastion("migrate", "status").exit_code == 1

    nothing = bastion("migrate", "down")
    assert nothing.exit_code == 1
    assert "nothing to revert" in nothing.stderr
    assert "Traceback" not in nothing.output


def test_make_without_autogenerate_writes_an_empty_revision(bastion: Runner, project: Path) -> None:
    made = bastion("migrate", "make", "-m", "by hand", "--no-autogenerate")

    assert made.exit_code == 0, made.output
    [revision] = (project / "cliapp" / "migrations").glob("*by_hand*.py")
    assert "op.create_table" not in revision.read_text(encoding="utf-8")
    # Writing a revision by hand needs no database.
    assert not (project / "var" / "cliapp.db").exists()


def test_the_app_can_be_named_on_the_command_line(bastion: Runner, project: Path) -> None:
    (project / "bastion.toml").write_text(
        '[database]\nurl = "sqlite:///var/other.db"\n', encoding="utf-8"
    )

    result = bastion("migrate", "up", "cliapp.app:app")

    assert result.exit_code == 0, result.output
    assert (project / "var" / "other.db").exists()


def test_a_database_that_cannot_be_opened_is_a_message(bastion: Runner, project: Path) -> None:
    folder = project / "not-a-folder"
    folder.write_text("", encoding="utf-8")

    result = bastion("migrate", "status", env={"BASTION_DATABASE_URL": f"sqlite:///{folder}/x.db"})

    assert result.exit_code == 1
    assert result.stderr.startswith("error:")
    assert "Traceback" not in result.output
