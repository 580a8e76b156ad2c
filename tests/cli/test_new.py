"""``bastion new``: the scaffold is created, valid, migratable, servable and tested."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import Runner, platform_head

FILES = {
    ".gitignore",
    "README.md",
    "__init__.py",
    "app.py",
    "bastion.toml",
    "migrations/0001_create_notes.py",
    "tests/__init__.py",
    "tests/test_app.py",
}


def run(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a command in a clean environment (no BASTION_* from the outer run)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BASTION_", "PYTEST_"))}
    env["COLUMNS"] = "200"
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def bastion_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, "-m", "bastion.cli", *args, cwd=cwd)


def test_new_writes_the_package(bastion: Runner, tmp_path: Path) -> None:
    result = bastion("new", "notes", "--dir", str(tmp_path))

    assert result.exit_code == 0, result.output
    target = tmp_path / "notes"
    written = {str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()}
    assert written == FILES
    app = (target / "app.py").read_text(encoding="utf-8")
    assert 'App(\n    "notes",' in app
    assert "from bastion import NAMING_CONVENTION, App, Context, NotFound" in app
    assert "{name}" not in app
    revision = (target / "migrations" / "0001_create_notes.py").read_text(encoding="utf-8")
    assert 'branch_labels: str | Sequence[str] | None = ("notes",)' in revision
    # The platform's head, as a revision id: Alembic cannot resolve "bastion@head" in a file.
    assert f'depends_on: str | Sequence[str] | None = "{platform_head()}"' in revision
    toml = (target / "bastion.toml").read_text(encoding="utf-8")
    assert 'url = "sqlite:///var/notes.db"' in toml
    assert "[profile.development.database]\n" in toml
    assert "from notes.app import app" in (target / "tests" / "test_app.py").read_text(
        encoding="utf-8"
    )
    assert "export BASTION_APP=notes.app:app" in result.stdout


def test_new_into_an_existing_empty_folder(bastion: Runner, tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()

    result = bastion("new", "notes", "--dir", str(tmp_path))

    assert result.exit_code == 0, result.output


def test_new_refuses_a_non_empty_folder(bastion: Runner, tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine", encoding="utf-8")

    result = bastion("new", "notes", "--dir", str(tmp_path))

    assert result.exit_code == 2
    assert "already exists and is not an empty folder" in result.stderr
    assert (tmp_path / "notes" / "keep.txt").read_text(encoding="utf-8") == "mine"
    assert not (tmp_path / "notes" / "app.py").exists()


@pytest.mark.parametrize(
    "name", ["1notes", "my-notes", "class", "notes.app", "json", "bastion", "né"]
)
def test_new_refuses_an_invalid_name(bastion: Runner, tmp_path: Path, name: str) -> None:
    result = bastion("new", name, "--dir", str(tmp_path))

    assert result.exit_code == 2
    assert f"invalid app name {name!r}" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_the_scaffold_migrates_lists_its_routes_and_passes_its_tests(
    bastion: Runner, tmp_path: Path
) -> None:
    assert bastion("new", "notes", "--dir", str(tmp_path)).exit_code == 0

    imported = run(sys.executable, "-c", "from notes.app import app; print(app.name)", cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "notes"

    # The app's bastion.toml is found through App(config=...), from the parent folder.
    check = bastion_cli("config", "check", "notes.app:app", cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert str(tmp_path / "notes" / "bastion.toml") in check.stdout

    up = bastion_cli("migrate", "up", "notes.app:app", cwd=tmp_path)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "notes_0001" in up.stdout
    assert (tmp_path / "notes" / "var" / "notes.db").exists()

    # The hand-written first revision matches the models: autogenerate finds nothing.
    made = bastion_cli("migrate", "make", "-m", "nothing", "notes.app:app", cwd=tmp_path)
    assert made.returncode == 0, made.stdout + made.stderr
    [empty] = (tmp_path / "notes" / "migrations").glob("*nothing*.py")
    assert "op." not in empty.read_text(encoding="utf-8")

    routes = bastion_cli("routes", "notes.app:app", cwd=tmp_path)
    assert routes.returncode == 0, routes.stderr
    assert "/api/v1/notes/{note_id}" in routes.stdout
    assert "create_note" in routes.stdout

    tests = run(
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "notes/tests", cwd=tmp_path
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "3 passed" in tests.stdout
