"""``bastion run`` and ``bastion dev``: serve the app with uvicorn.

Server processes (``--workers N``, and the reloader's child in ``dev``) start
fresh and share nothing with the command that launched them. So the command
resolves the app and its configuration once, exports the result as environment
variables (``BASTION_APP``, ``BASTION_CONFIG`` and ``BASTION_SERVER_HOST``/``PORT``/
``WORKERS`` for the options given), and each server process rebuilds the app from
them in :func:`asgi_factory`. Because the options travel as ordinary settings
overrides, every process validates and sees the same settings.

uvicorn is told not to trust ``X-Forwarded-*`` headers (bastion will do
trusted-proxy handling itself), not to send a ``Server`` header, and not to write
its own access log or configure logging: bastion's access log and
:func:`~bastion.observability.logs.configure_logging` do both.
"""

from __future__ import annotations

import atexit
import math
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Annotated, Any

import typer
import uvicorn

from bastion.cli.discovery import AppArgument, ConfigOption, Project, locate
from bastion.cli.output import reporting
from bastion.observability.logs import configure_logging, get_logger
from bastion.observability.metrics import multiprocess_dir, prepare_multiprocess_dir
from bastion.settings import Settings
from bastion.types import ASGIApp

#: The import string uvicorn calls in every server process.
FACTORY = "bastion.cli.run:asgi_factory"

HostOption = Annotated[
    str | None,
    typer.Option(
        "--host", help="Interface to listen on (default: \\[server] host).", show_default=False
    ),
]
PortOption = Annotated[
    int | None,
    typer.Option(
        "--port",
        "-p",
        min=1,
        max=65535,
        help="Port (default: \\[server] port).",
        show_default=False,
    ),
]
EmbeddedWorkerOption = Annotated[
    bool | None,
    typer.Option(
        "--embedded-worker/--no-embedded-worker",
        help="Run background jobs in each server process (default: \\[jobs] embedded_worker; "
        "on in development).",
        show_default=False,
    ),
]
WorkersOption = Annotated[
    int | None,
    typer.Option(
        "--workers",
        "-w",
        min=1,
        max=64,
        show_default=False,
        help="Worker processes (default: \\[server] workers).",
    ),
]


def asgi_factory() -> ASGIApp:
    """Build the app in a server process from the environment the command exported.

    uvicorn calls this in each worker (``factory=True``). Workers are new
    processes, so logging is configured here too.

    Raises:
        CommandError: when ``BASTION_APP`` names no importable app.
        SettingsError: when the configuration is invalid.
    """
    project = locate(None, None)
    settings = project.settings()
    _configure_logging(settings)
    runtime = project.runtime(settings)
    if settings.jobs.embedded_worker is None:
        # One machine in development: jobs run without a second command.
        runtime.embedded_worker = settings.env == "development"
    return runtime.asgi()


def run(
    app: AppArgument = None,
    host: HostOption = None,
    port: PortOption = None,
    workers: WorkersOption = None,
    embedded_worker: EmbeddedWorkerOption = None,
    config: ConfigOption = None,
) -> None:
    """Serve the app in production with uvicorn.

    On SIGTERM the server stops accepting connections, lets in-flight requests
    finish (up to \\[server] graceful_shutdown_s), runs the app's shutdown and exits 0.
    With ``--embedded-worker`` each server process also runs background jobs, and
    stops claiming them on SIGTERM too.
    """
    with reporting():
        project = locate(app, config)
        _export(project, host=host, port=port, workers=workers)
        if embedded_worker is not None:
            os.environ["BASTION_JOBS_EMBEDDED_WORKER"] = str(embedded_worker).lower()
        settings = project.settings()
        _serve(project, settings, reload=False)


def dev(
    app: AppArgument = None,
    host: HostOption = None,
    port: PortOption = None,
    config: ConfigOption = None,
) -> None:
    """Serve the app for development: one process, reloaded when a file changes.

    Uses the development profile whatever BASTION_ENV says, and watches *.py and
    *.toml files under the current folder.
    """
    with reporting():
        os.environ["BASTION_ENV"] = "development"
        project = locate(app, config)
        _export(project, host=host, port=port, workers=1)
        settings = project.settings()
        _serve(project, settings, reload=True)


def _export(project: Project, *, host: str | None, port: int | None, workers: int | None) -> None:
    os.environ["BASTION_APP"] = project.target
    if project.config is not None:
        os.environ["BASTION_CONFIG"] = str(project.config)
    for key, value in (("HOST", host), ("PORT", port), ("WORKERS", workers)):
        if value is not None:
            os.environ[f"BASTION_SERVER_{key}"] = str(value)


def _configure_logging(settings: Settings) -> None:
    configure_logging(
        level=settings.log.level, fmt=settings.log.format, env=settings.env, file=settings.log.file
    )


def _serve(project: Project, settings: Settings, *, reload: bool) -> None:
    server = settings.server
    _configure_logging(settings)
    workers = 1 if reload else server.workers
    metrics_dir = multiprocess_dir(settings.metrics.multiprocess_dir)
    if metrics_dir is None and workers > 1:
        # Each worker counts its own requests; without shared files a scrape would
        # show whichever process answered it.
        metrics_dir = tempfile.mkdtemp(prefix="bastion-metrics-")
        atexit.register(shutil.rmtree, metrics_dir, ignore_errors=True)
    if metrics_dir is not None:
        # Before any worker starts: the files of an earlier run would add to this one's.
        prepare_multiprocess_dir(metrics_dir, wipe=True)
    get_logger("bastion.cli").info(
        "serving",
        app=project.target,
        env=settings.env,
        config=str(project.config or "(defaults)"),
        host=server.host,
        port=server.port,
        workers=workers,
        reload=reload,
    )
    options: dict[str, Any] = {}
    if reload:
        options.update(reload=True, reload_dirs=[os.getcwd()], reload_includes=["*.py", "*.toml"])
    with _exit_zero_on_stop_signals():
        uvicorn.run(
            FACTORY,
            factory=True,
            host=server.host,
            port=server.port,
            workers=workers,
            # "on", not "auto": a failing start-up (migrations, hooks) must stop the
            # server, and the shutdown (closing pools) must run on SIGTERM.
            lifespan="on",
            # uvicorn counts whole seconds; rounding up never cuts a request short.
            timeout_graceful_shutdown=math.ceil(server.graceful_shutdown_s),
            proxy_headers=False,
            forwarded_allow_ips="",
            server_header=False,
            access_log=False,
            log_config=None,
            # Realtime messages are small: per-message compression cost ~40 KiB per
            # connection and a tenth of the fan-out CPU (benchmarks/realtime_fanout.py).
            ws_per_message_deflate=settings.realtime.compression,
            **options,
        )


@contextmanager
def _exit_zero_on_stop_signals() -> Iterator[None]:
    """Make SIGTERM and SIGINT end the process with exit code 0.

    While it serves, uvicorn handles both signals itself (stop accepting, drain,
    run the lifespan shutdown); afterwards it restores the handlers it found and
    raises the signal again, which with the default handlers would end a cleanly
    stopped server with "killed by SIGTERM". A signal that arrives before uvicorn
    took over (while the app is imported) also stops the process, as it should.
    """

    def stop(_signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(0)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
