"""``bastion new``: scaffold a small, runnable app package.

The files come from ``templates/new/`` (plain files ending in ``.tmpl``, so that
linters do not read them as code). Placeholders such as ``{name}`` are replaced
with ``str.replace``: every other brace in the templates stays as written.
"""

from __future__ import annotations

import keyword
import re
import sys
from datetime import UTC, datetime
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated

import typer
from alembic.script import ScriptDirectory
from rich.text import Text

from bastion.cli.output import EXIT_USAGE, CommandError, reporting, stdout
from bastion.db.migrations import PLATFORM_MIGRATIONS

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
#: Names that would shadow bastion itself, or the ``tests`` package most projects have.
_TAKEN = frozenset({"bastion", "tests"})
#: Template files whose real name starts with a dot (kept without it in the package).
_DOTFILES = {"gitignore": ".gitignore"}


def new(
    name: Annotated[
        str, typer.Argument(help="The app's package name: a Python identifier, e.g. notes.")
    ],
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            "-d",
            file_okay=False,
            show_default=False,
            help="Create NAME/ inside this folder (default: the current folder).",
        ),
    ] = None,
) -> None:
    """Create NAME/: an app with one table, a query, a mutation, a migration and tests."""
    with reporting():
        check_name(name)
        target = (directory or Path.cwd()) / name
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise CommandError(
                f"{target} already exists and is not an empty folder",
                exit_code=EXIT_USAGE,
                hint="choose another NAME or --dir",
            )
        created = scaffold(name, target)
        console = stdout()
        console.print(Text.assemble(("Created ", "green"), f"{target}/"))
        for path in created:
            console.print(Text(f"  {path.relative_to(target)}"))
        console.print()
        console.print("Next steps, from the folder that contains it:")
        console.print(
            Text(
                f"  export BASTION_APP={name}.app:app\n"
                "  bastion dev            # serves http://127.0.0.1:8000/docs\n"
                f"  pytest {name}/tests",
                style="bold",
            )
        )


def check_name(name: str) -> None:
    """Refuse a NAME that is not a usable package name.

    Raises:
        CommandError: naming what is wrong with it.
    """
    if not _NAME.match(name) or keyword.iskeyword(name):
        raise CommandError(
            f"invalid app name {name!r}: it must be a Python identifier (letters, digits, _; "
            "not starting with a digit; not a keyword)",
            exit_code=EXIT_USAGE,
        )
    if name in sys.stdlib_module_names or name in _TAKEN:
        raise CommandError(
            f"invalid app name {name!r}: it would shadow the module {name!r}", exit_code=EXIT_USAGE
        )


def scaffold(name: str, target: Path) -> list[Path]:
    """Render the templates into ``target``; returns the files written, in order."""
    values = {
        "{name}": name,
        "{date}": datetime.now(UTC).strftime("%Y-%m-%d"),
        "{platform_revision}": _platform_head(),
    }
    written: list[Path] = []
    templates = _templates(files("bastion.cli") / "templates" / "new", Path())
    for relative, template in sorted(templates, key=lambda item: item[0]):
        text = template.read_text(encoding="utf-8")
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def _templates(folder: Traversable, relative: Path) -> list[tuple[Path, Traversable]]:
    found: list[tuple[Path, Traversable]] = []
    for entry in folder.iterdir():
        if entry.is_dir():
            found += _templates(entry, relative / entry.name)
        elif entry.name.endswith(".tmpl"):
            stem = entry.name.removesuffix(".tmpl")
            found.append((relative / _DOTFILES.get(stem, stem), entry))
    return found


def _platform_head() -> str:
    """The platform's latest revision, which the app's first revision depends on.

    It is written as a revision id, as ``bastion migrate make`` does: Alembic does
    not resolve ``bastion@head`` in a revision file.
    """
    platform = PLATFORM_MIGRATIONS.parent
    return ScriptDirectory(str(platform)).get_revision("bastion@head").revision
