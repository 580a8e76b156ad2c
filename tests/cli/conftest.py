"""Fixtures for the CLI tests: a throw-away project folder and a command runner.

The project under test is ``tests/cli/project`` (the ``cliapp`` package and its
``bastion.toml``), copied into a temporary folder for each test, so that the
migrations ``bastion migrate make`` writes and the SQLite database stay there.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from bastion.cli.main import cli

PROJECT = Path(__file__).parent / "project"
PACKAGE = "cliapp"

#: Variables the commands read or export; each test starts without them.
_COMMAND_ENV = (
    "BASTION_APP",
    "BASTION_CONFIG",
    "BASTION_ENV",
    "BASTION_SERVER_HOST",
    "BASTION_SERVER_PORT",
    "BASTION_SERVER_WORKERS",
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # `bastion run` exports BASTION_* variables into its own process. Setting each
    # one before deleting it makes monkeypatch remove it again after the test,
    # even if it was absent before (a plain delenv of a missing name is not undone).
    names = {*_COMMAND_ENV, *(name for name in os.environ if name.startswith("BASTION_"))}
    for name in names:
        if name.startswith("BASTION_TEST_"):
            continue  # the test kit's own switches (database backend...)
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def platform_head() -> str:
    """The newest revision of bastion's own migration branch."""
    from alembic.script import ScriptDirectory

    from bastion.db.migrations import PLATFORM_MIGRATIONS

    revision = ScriptDirectory(str(PLATFORM_MIGRATIONS.parent)).get_revision("bastion@head")
    assert revision is not None
    return str(revision.revision)


def copy_project(target: Path) -> Path:
    """Copy the test project to ``target``; returns the folder."""
    shutil.copytree(PROJECT, target, ignore=shutil.ignore_patterns("__pycache__", "var"))
    return target


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A copy of the test project, made the current folder (and importable) for the test."""
    folder = copy_project(tmp_path / "project")
    monkeypatch.chdir(folder)
    # The CLI puts the current folder on sys.path; adding it first through
    # monkeypatch means it is taken off again after the test.
    monkeypatch.syspath_prepend(os.getcwd())
    _forget_package()
    yield folder
    _forget_package()


def _forget_package() -> None:
    # Each test imports its own copy of the package, from its own folder.
    for name in [name for name in sys.modules if name == PACKAGE or name.startswith(f"{PACKAGE}.")]:
        del sys.modules[name]


class Runner:
    """Runs ``bastion`` in-process, wide enough that Rich tables are not cut."""

    def __init__(self) -> None:
        self._runner = CliRunner()

    def __call__(
        self, *args: str, env: dict[str, str] | None = None, input: str | None = None
    ) -> Result:
        return self._runner.invoke(
            cli, list(args), env={"COLUMNS": "200", **(env or {})}, input=input
        )


@pytest.fixture
def bastion() -> Runner:
    """``bastion("migrate", "up")`` runs the command and returns its result."""
    return Runner()
