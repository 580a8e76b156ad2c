"""``bastion worker``: run background jobs in a process of their own.

SIGTERM or Ctrl-C stop claiming; running jobs get ``[jobs] shutdown_grace_s`` to
finish, then are given back to the queue (their attempt does not count). A second
Ctrl-C stops at once; leases then bring the jobs back after ``[jobs] lease_s``.
"""

from __future__ import annotations

import signal
from typing import Annotated

import anyio
import typer

from bastion.app import Runtime
from bastion.cli.discovery import AppArgument, ConfigOption, locate
from bastion.cli.output import EXIT_USAGE, CommandError, reporting
from bastion.jobs import Worker
from bastion.observability.logs import configure_logging

QueuesOption = Annotated[
    list[str] | None,
    typer.Option(
        "--queue",
        "-q",
        help="A queue to serve (repeatable, or comma-separated); default: every declared queue.",
        show_default=False,
    ),
]
ConcurrencyOption = Annotated[
    int | None,
    typer.Option(
        "--concurrency",
        min=1,
        max=1000,
        help="Jobs at once in this process (default: \\[jobs] concurrency).",
        show_default=False,
    ),
]


def worker(
    app: AppArgument = None,
    queue: QueuesOption = None,
    concurrency: ConcurrencyOption = None,
    config: ConfigOption = None,
) -> None:
    """Run the app's background jobs until SIGTERM or Ctrl-C."""
    with reporting():
        project = locate(app, config)
        settings = project.settings()
        configure_logging(
            level=settings.log.level,
            fmt=settings.log.format,
            env=settings.env,
            file=settings.log.file,
        )
        wanted = (concurrency or settings.jobs.concurrency) + 2
        if settings.database.pool_size < wanted:
            # A sync job holds a connection while it runs: a pool smaller than the
            # concurrency opens and closes an overflow connection per job.
            database = settings.database.model_copy(update={"pool_size": wanted})
            settings = settings.model_copy(update={"database": database})
        runtime = project.runtime(settings)
        queues = [name for value in queue or [] for name in value.split(",") if name] or None
        declared = runtime.app.jobs.queue_names()
        unknown = sorted(set(queues or []) - set(declared))
        if unknown:
            raise CommandError(
                f"no job is declared on queue(s) {', '.join(unknown)}",
                hint=f"declared queues: {', '.join(declared) or 'none'}",
                exit_code=EXIT_USAGE,
            )
        anyio.run(_work, runtime, queues, concurrency)


async def _work(runtime: Runtime, queues: list[str] | None, concurrency: int | None) -> None:
    await runtime.startup()
    try:
        worker = runtime.jobs.worker(queues, concurrency=concurrency)
        async with anyio.create_task_group() as group:
            group.start_soon(_stop_on_signals, worker)
            # Keeps this process's metrics fresh in a multiprocess folder shared with servers.
            group.start_soon(runtime.report_periodically)
            await worker.run()
            group.cancel_scope.cancel()
    finally:
        await runtime.shutdown()


async def _stop_on_signals(worker: Worker) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for received in signals:
            if worker.stopping and received == signal.SIGINT:
                raise SystemExit(130)
            worker.stop()
