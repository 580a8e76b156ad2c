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
from alembic.util import CommandError as AlembicError
from rich.table import Table

from bastion.cli.discovery import AppOption, ConfigOption, Project, locate
from bastion.cli.output import EXIT_FAILURE, EXIT_USAGE, CommandError, reporting, stderr, stdout
from bastion.db.migrations import MigrationStatus, Migrator

group = typer.Typer(
    name="migrate",
    help="Apply, revert, inspect and write database migrations.",
    no_args_is_help=True,
)


@group.command("up")
def up(app: AppOption = None, config: ConfigOption = None) -> None:
    """Apply every pending migration, the platform's and the app's."""
    with reporting(), _migrator(app, config) as (project, migrator):
        before = migrator.status()
        with stderr().status("Applying migrations…"):
            migrator.upgrade()
        after = migrator.status()
        if before.current == after.current:
            stdout().print("[green]Already up to date.[/]")
        else:
            stdout().print(f"[green]Upgraded[/] {project.app.name}.")
        _print_status(migrator, after)


@group.command("down")
def down(app: AppOption = None, config: ConfigOption = None) -> None:
    """Revert the app's latest applied migration (one revision of the app's branch)."""
    with reporting(), _migrator(app, config) as (project, migrator):
        before = migrator.status()
        with stderr().status("Reverting one revision…"):
            migrator.downgrade()
        after = migrator.status()
        reverted = sorted(set(before.current) - set(after.current))
        stdout().print(f"[green]Reverted[/] {', '.join(reverted) or 'nothing'} ({project.app.name}).")
        _print_status(migrator, after)


@group.command("status")
def status(app: AppOption = None, config: ConfigOption = None) -> None:
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
    message: Annotated[str, typer.Option("--message", "-m", help="What the revision does; names its file.")],
    autogenerate: Annotated[
        bool,
        typer.Option("--autogenerate/--no-autogenerate",
                     help="Compare the app's tables with the database and write the operations."),
    ] = True,
    app: AppOption = None,
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
        stdout().print(f"[green]Created[/] {path}")
        stdout().print("Review it, then apply it with [bold]bastion migrate up[/].")


@contextmanager
def _migrator(app: str | None, config: Path | None) -> Iterator[tuple[Project, Migrator]]:
    project = locate(app, config)
    runtime = project.runtime()
    try:
        yield project, runtime.migrator()
    except AlembicError as exc:
        raise CommandError(str(exc), hint=_hint(str(exc))) from None
    finally:
        runtime.database.dispose()


def _hint(message: str) -> str | None:
    if "not up to date" in message:
        return "apply pending migrations first with 'bastion migrate up'"
    if "Relative revision" in message or "Can't locate revision" in message:
        return "the app has no applied revision to revert; see 'bastion migrate status'"
    return None


def _print_status(migrator: Migrator, state: MigrationStatus) -> None:
    script = ScriptDirectory.from_config(migrator.config())
    table = Table(title="Migrations", title_justify="left")
    table.add_column("Branch", style="bold")
    table.add_column("Current")
    table.add_column("Head")
    table.add_column("State")
    current = list(state.current)
    for head in sorted(script.get_heads()):
        labels = script.get_revision(head).branch_labels or set()
        applied = [rev for rev in current if rev == head or _labels(script, rev) & labels]
        for rev in applied:
            current.remove(rev)
        at = ", ".join(applied) or "(none)"
        done = head in state.current
        table.add_row(", ".join(sorted(labels)) or "-", at, head,
                      "[green]up to date[/]" if done else "[yellow]pending[/]")
    for rev in current:
        # Applied but unknown to this code: the database is ahead of it, or on another branch.
        table.add_row("?", rev, "-", "[red]unknown revision[/]")
    stdout().print(table)


def _labels(script: ScriptDirectory, revision: str) -> set[str]:
    try:
        return set(script.get_revision(revision).branch_labels or ())
    except AlembicError:
        return set()
