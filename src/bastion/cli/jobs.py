"""``bastion jobs``: look at jobs and act on them (list, show, retry, cancel, purge)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from bastion.cli.discovery import AppArgument, ConfigOption, locate
from bastion.cli.output import CommandError, reporting, stdout
from bastion.jobs import JobStatus

group = typer.Typer(
    name="jobs", help="Inspect and operate on background jobs.", no_args_is_help=True
)

IdsArgument = Annotated[list[int], typer.Argument(help="Job ids.", show_default=False)]


@group.command("ls")
def ls(
    app: AppArgument = None,
    status: Annotated[
        str | None,
        typer.Option("--status", "-s", help="queued, running, succeeded, dead or cancelled."),
    ] = None,
    queue: Annotated[str | None, typer.Option("--queue", "-q", help="Only this queue.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Only jobs of this name.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000)] = 50,
    config: ConfigOption = None,
) -> None:
    """List jobs, newest first, with a count per queue and status."""
    with reporting():
        if status is not None and status not in {s.value for s in JobStatus}:
            raise CommandError(
                f"unknown status {status!r}", hint=f"use one of {', '.join(JobStatus)}"
            )
        runtime = locate(app, config).runtime()
        try:
            rows = runtime.jobs.store.list(status=status, queue=queue, name=name, limit=limit)
            counts = runtime.jobs.store.counts()
        finally:
            runtime.database.dispose()
        table = Table("id", "queue", "job", "status", "attempts", "run at", "last error")
        for row in rows:
            table.add_row(
                str(row.id),
                row.queue,
                row.handler,
                row.status,
                f"{row.attempts}/{row.max_attempts}",
                row.run_at.isoformat(timespec="seconds"),
                (row.last_error or "").splitlines()[-1][:60] if row.last_error else "",
            )
        console = stdout()
        console.print(table)
        summary = ", ".join(f"{q}/{s}: {n}" for (q, s), n in sorted(counts.items()))
        console.print(summary or "no jobs")


@group.command("show")
def show(
    job_id: Annotated[int, typer.Argument()], app: AppArgument = None, config: ConfigOption = None
) -> None:
    """Print one job as JSON: arguments, attempts, progress, result, last error."""
    with reporting():
        runtime = locate(app, config).runtime()
        try:
            row = runtime.jobs.store.get(job_id)
        finally:
            runtime.database.dispose()
        if row is None:
            raise CommandError(f"no job {job_id}")
        fields = {c.key: getattr(row, c.key) for c in row.__table__.columns}
        stdout().print_json(json.dumps(fields, default=str))


@group.command("retry")
def retry(ids: IdsArgument, app: AppArgument = None, config: ConfigOption = None) -> None:
    """Queue dead or cancelled jobs again, with a fresh set of attempts."""
    _act("retried", ids, app, config)


@group.command("cancel")
def cancel(ids: IdsArgument, app: AppArgument = None, config: ConfigOption = None) -> None:
    """Cancel queued or running jobs (a running one stops at its next heartbeat)."""
    _act("cancelled", ids, app, config)


def _act(verb: str, ids: list[int], app: str | None, config: Path | None) -> None:
    with reporting():
        runtime = locate(app, config).runtime()
        store = runtime.jobs.store
        action = store.retry if verb == "retried" else store.cancel
        try:
            done = [job_id for job_id in ids if action(job_id)]
        finally:
            runtime.database.dispose()
        skipped = sorted(set(ids) - set(done))
        stdout().print(f"{verb} {len(done)} of {len(ids)}")
        if skipped:
            raise CommandError(
                f"not {verb}: {', '.join(map(str, skipped))}",
                hint="retry takes dead or cancelled jobs; cancel takes queued or running ones",
            )


@group.command("purge")
def purge(app: AppArgument = None, config: ConfigOption = None) -> None:
    """Delete finished jobs (and cron records) older than \\[jobs] retention_s."""
    with reporting():
        runtime = locate(app, config).runtime()
        try:
            jobs, fires = runtime.jobs.store.purge(
                timedelta(seconds=runtime.settings.jobs.retention_s)
            )
        finally:
            runtime.database.dispose()
        stdout().print(f"purged {jobs} finished jobs and {fires} cron records")
