"""``bastion search``: maintain the app's full-text indexes (``reindex``)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from bastion.cli.discovery import AppArgument, ConfigOption, locate
from bastion.cli.output import CommandError, reporting, stderr, stdout

group = typer.Typer(name="search", help="Maintain full-text search indexes.", no_args_is_help=True)


@group.command("reindex")
def reindex(
    app: AppArgument = None,
    index: Annotated[
        list[str] | None,
        typer.Option("--index", "-i", help="Only this index (repeatable); default: all."),
    ] = None,
    batch: Annotated[int, typer.Option("--batch", min=1, max=100_000)] = 500,
    config: ConfigOption = None,
) -> None:
    """Rebuild search indexes from their tables, one transaction per index.

    Searches keep answering from the old entries until an index's transaction
    commits, so a reindex never shows an empty index to readers.
    """
    with reporting():
        project = locate(app, config)
        declared = project.app.search_indexes
        names = index or sorted(declared)
        unknown = [name for name in names if name not in declared]
        if unknown:
            raise CommandError(
                f"no search index {', '.join(map(repr, unknown))}",
                hint=f"declared: {', '.join(sorted(declared)) or 'none'} (app.search_index(...))",
            )
        if not names:
            stdout().print("no search indexes declared")
            return
        runtime = project.runtime()
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        try:
            with Progress(*columns, console=stderr()) as progress:
                for name in names:
                    task = progress.add_task(name, total=None)

                    def advance(done: int, total: int, task: TaskID = task) -> None:
                        progress.update(task, completed=done, total=total)

                    with runtime.database.transaction() as session:
                        count = declared[name].rebuild(session, batch=batch, progress=advance)
                    progress.console.print(f"{name}: {count} rows indexed")
        finally:
            runtime.database.dispose()
