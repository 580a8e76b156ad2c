"""``bastion user``: manage platform users from the command line."""

from __future__ import annotations

import secrets
import sys
from typing import Annotated

import typer

from bastion.app import Runtime
from bastion.auth import create_user
from bastion.cli.discovery import AppArgument, ConfigOption, locate
from bastion.cli.output import EXIT_USAGE, CommandError, reporting, stdout
from bastion.errors import BastionError

group = typer.Typer(name="user", help="Create platform users.", no_args_is_help=True)


@group.command("create")
def create(
    app: AppArgument = None,
    email: Annotated[str, typer.Option("--email", help="The user's email address.")] = "",
    name: Annotated[str, typer.Option("--name", help="Display name.")] = "",
    admin: Annotated[bool, typer.Option("--admin", help="Give the admin role.")] = False,
    role: Annotated[
        list[str] | None, typer.Option("--role", help="A role to give (repeatable).")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    generate: Annotated[
        bool, typer.Option("--generate", help="Generate a password and print it once.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Create a user; the password is prompted for unless given on stdin or generated."""
    with reporting():
        if not email:
            raise CommandError("--email is required", exit_code=EXIT_USAGE)
        if password_stdin and generate:
            raise CommandError(
                "choose one of --password-stdin and --generate", exit_code=EXIT_USAGE
            )
        if generate:
            password = secrets.token_urlsafe(18)
        elif password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
        roles = set(role or ()) | ({"admin"} if admin else set()) or {"user"}
        project = locate(app, config)
        runtime = project.runtime()
        try:
            with runtime.database.transaction() as session:
                user = create_user(
                    session,
                    runtime.passwords,
                    email=email,
                    password=password,
                    name=name,
                    roles=roles,
                    known_roles=runtime.settings.auth.roles,
                )
                created = (user.id, user.email, sorted(user.roles))
        except BastionError as exc:
            raise CommandError(_describe(runtime, exc)) from None
        finally:
            runtime.database.dispose()
        console = stdout()
        console.print(
            f"created user {created[0]} <{created[1]}> with roles {', '.join(created[2])}"
        )
        if generate:
            console.print(f"password (shown once): {password}")


def _describe(runtime: Runtime, exc: BastionError) -> str:
    catalog = runtime.app.errors
    detail = exc.detail or catalog.render(exc.error_code, "en", exc.params).detail
    fields = [
        f"{e.field}: {catalog.render_field(e.code, 'en', dict(e.params or {})) or e.code}"
        for e in exc.errors
    ]
    return f"{exc.error_code}: {detail}" + (f" ({'; '.join(fields)})" if fields else "")
