"""The ``bastion`` command: wires one module per command group.

=================  ==========================================================
``run``, ``dev``   :mod:`bastion.cli.run`
``migrate ...``    :mod:`bastion.cli.migrate`
``routes``         :mod:`bastion.cli.routes`
``config ...``     :mod:`bastion.cli.config`
``openapi``        :mod:`bastion.cli.openapi`
``new``            :mod:`bastion.cli.new`
``user ...``       :mod:`bastion.cli.user`
``auth ...``       :mod:`bastion.cli.auth`
``idempotency``    :mod:`bastion.cli.idempotency`
``worker``         :mod:`bastion.cli.worker`
``jobs ...``       :mod:`bastion.cli.jobs`
``search ...``     :mod:`bastion.cli.search`
=================  ==========================================================
"""

from __future__ import annotations

from typing import Annotated

import typer

import bastion
from bastion.cli import (
    auth,
    config,
    idempotency,
    jobs,
    migrate,
    new,
    openapi,
    routes,
    run,
    search,
    user,
    worker,
)
from bastion.cli.output import options

cli = typer.Typer(
    name="bastion",
    no_args_is_help=True,
    rich_markup_mode="rich",
    # Tracebacks are opt-in (--traceback), and never show local variables: they
    # would print settings, secrets included.
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
cli.command("run")(run.run)
cli.command("dev")(run.dev)
cli.add_typer(migrate.group)
cli.command("routes")(routes.routes)
cli.add_typer(config.group)
cli.command("openapi")(openapi.openapi)
cli.command("new")(new.new)
cli.add_typer(user.group)
cli.add_typer(auth.group)
cli.add_typer(idempotency.group)
cli.command("worker")(worker.worker)
cli.add_typer(jobs.group)
cli.add_typer(search.group)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"bastion {bastion.__version__}")
        raise typer.Exit()


@cli.callback()
def root(
    traceback: Annotated[
        bool,
        typer.Option(
            "--traceback", help="Show the full traceback of an error instead of a message."
        ),
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Serve, migrate, inspect and scaffold bastion apps.

    Commands find the app from APP (package.module:attr), $BASTION_APP or \\[app]
    module in bastion.toml, and the configuration from --config, $BASTION_CONFIG,
    ./bastion.toml or the app's own.
    """
    options.show_tracebacks = traceback


def main() -> None:
    """Entry point of the ``bastion`` script."""
    cli()
