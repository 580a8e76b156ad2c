"""``bastion migrate``: apply, revert, inspect and write migrations.

The platform's revisions (branch ``bastion``) and the app's (branch named after
the app) are applied together; see :mod:`bastion.db.migrations`. ``status``
exits 1 while anything is pending, so deploy scripts can gate on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError as AlembicError
from rich.markup import escape
from rich.table import Table

from bastion.cli.discovery import AppArgument, ConfigOption, Project, locate
from bastion.cli.output import EXIT_FAILURE, EXIT_USAGE, CommandError, reporting, stderr, stdout
from bastion.db.migrations import MigrationStatus, Migrator

group = typer.Typer(
    name="migrate",
    help="Apply, revert, inspect and write database migrations.",
    no_args_is_help=True,
)


@group.command("up")
def up(app: AppArgument = None, config: ConfigOption = None) -> None:
    """Apply every pending migration, the platform's and the app's."""
    with reporting(), _migrator(app, config) as (_project, migrator):
        before = _applied(migrator, migrator.status())
        with stderr().status("Applying migrations…"):
            migrator.upgrade()
        after = migrator.status()
        done = [rev for rev in _applied(migrator, after) if rev not in before]
        if done:
            stdout().print(f"[green]Applied[/] {', '.join(done)}.")
        else:
            stdout().print("[green]Already up to date.[/]")
        _print_status(migrator, after)


@group.command("down")
def down(app: AppArgument = None, config: ConfigOption = None) -> None:
    """Revert the app's latest applied migration (one revision of the app's branch)."""
    with reporting(), _migrator(app, config) as (project, migrator):
        before = _applied(migrator, migrator.status())
        script = ScriptDirectory.from_config(migrator.config())
        if not any(migrator.branch in _labels(script, rev) for rev in before):
            raise CommandError(f"nothing to revert: no revision of {project.app.name!r} is applied")
        with stderr().status("Reverting one revision…"):
            migrator.downgrade()
        after = migrator.status()
        reverted = [rev for rev in before if rev not in _applied(migrator, after)]
        stdout().print(f"[green]Reverted[/] {', '.join(reverted)}.")
        _print_status(migrator, after)


@group.command("status")
def status(app: AppArgument = None, config: ConfigOption = None) -> None:
    """Show the applied revision of each branch next to its head; exit 1 if any is pending."""
    with reporting(), _migrator(app, config) as (_project, migrator):
        current = migrator.status()
        _print_status(migrator, current)
        if not current.up_to_date:
            stdout().print("[yellow]Pending migrations:[/] run [bold]bastion migrate up[/].")
            raise typer.Exit(EXIT_FAILURE)
        stdout().print("[green]Up to date.[/]")


@group.command("make")
def make(
    message: Annotated[
        str, typer.Option("--message", "-m", help="What the revision does; names its file.")
    ],
    autogenerate: Annotated[
        bool,
        typer.Option(
            "--autogenerate/--no-autogenerate",
            help="Compare the app's tables with the database and write the operations.",
        ),
    ] = True,
    app: AppArgument = None,
    config: ConfigOption = None,
) -> None:
    """Write a new revision of the app's migrations.

    With --autogenerate (the default) the database must be up to date first:
    the revision holds the difference between it and the app's tables.
    """
    with reporting(), _migrator(app, config) as (_project, migrator):
        if migrator.versions_dir is None:
            raise CommandError(
                "this app declares no migrations folder",
                exit_code=EXIT_USAGE,
                hint="pass migrations=Path(__file__).parent / 'migrations' to App(...)",
            )
        path = migrator.make(message, autogenerate=autogenerate)
        stdout().print(f"[green]Created[/] {escape(path)}")
        stdout().print("Review it, then apply it with [bold]bastion migrate up[/].")


@contextmanager
def _migrator(app: str | None, config: Path | None) -> Iterator[tuple[Project, Migrator]]:
    project = locate(app, config)
    runtime = project.runtime()
    try:
        yield project, runtime.migrator()
    except (AlembicError, RevisionError) as exc:
        raise CommandError(str(exc), hint=_hint(str(exc))) from None
    finally:
        runtime.database.dispose()


def _hint(message: str) -> str | None:
    if "not up to date" in message:
        return "apply pending migrations first with 'bastion migrate up'"
    if "Can't locate revision" in message:
        return "the database has a revision this code does not know: is the code older than it?"
    return None


def _applied(migrator: Migrator, state: MigrationStatus) -> list[str]:
    """Every applied revision, oldest first: recorded heads stand for their ancestors."""
    if not state.current:
        return []
    script = ScriptDirectory.from_config(migrator.config())
    newest_first = [rev.revision for rev in script.iterate_revisions(state.current, "base")]
    return newest_first[::-1]


def _print_status(migrator: Migrator, state: MigrationStatus) -> None:
    script = ScriptDirectory.from_config(migrator.config())
    applied = set(_applied(migrator, state))
    table = Table(title="Migrations", title_justify="left")
    table.add_column("Branch", style="bold")
    table.add_column("Current")
    table.add_column("Head")
    table.add_column("State")
    for head in sorted(script.get_heads()):
        labels = _labels(script, head)
        on_branch = [
            rev.revision
            for rev in script.iterate_revisions(head, "base")
            if labels & set(rev.branch_labels or ())
        ]
        at = next((rev for rev in on_branch if rev in applied), "(none)")
        table.add_row(
            ", ".join(sorted(labels)) or "-",
            at,
            head,
            "[green]up to date[/]" if head in applied else "[yellow]pending[/]",
        )
    stdout().print(table)


def _labels(script: ScriptDirectory, revision: str) -> set[str]:
    return set(script.get_revision(revision).branch_labels or ())
