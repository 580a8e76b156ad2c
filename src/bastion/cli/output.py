"""Terminal output for every command: Rich consoles, error messages, exit codes.

Commands run their body inside :func:`reporting`, which turns the failures a user
can fix (a missing app, an invalid ``bastion.toml``, an unreachable database) into
one clear message on standard error and an exit code, instead of a traceback.
``bastion --traceback ...`` re-raises them for debugging.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.text import Text
from sqlalchemy import exc as sa_exc

from bastion.settings import SettingsError

#: A command failed (an unexpected error, a database error, migrations pending).
EXIT_FAILURE = 1
#: The command was used wrongly or the configuration is invalid; fix the input.
EXIT_USAGE = 2


class CommandError(Exception):
    """A failure reported as one message and an exit code, never as a traceback.

    Args:
        message: What went wrong, in terms of what the user gave.
        exit_code: The process exit code.
        hint: What to do about it, shown on its own line.
    """

    def __init__(
        self, message: str, *, exit_code: int = EXIT_FAILURE, hint: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.hint = hint


class _Options:
    """Process-wide switches set by the root command's options."""

    show_tracebacks = False


options = _Options()


def stdout() -> Console:
    """A console on standard output.

    Consoles are built per call, not at import, so that they pick up the current
    ``sys.stdout`` (the test runner swaps it) and ``COLUMNS``.
    """
    return Console(highlight=False, soft_wrap=True)


def stderr() -> Console:
    """A console on standard error, for errors and progress."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


def error(message: str, *, hint: str | None = None) -> None:
    """Print ``error: message`` (and an optional hint) on standard error."""
    console = stderr()
    # Text, not markup: messages quote user input such as "[server]" or "[red]".
    console.print(Text.assemble(("error: ", "bold red"), message))
    if hint:
        console.print(Text.assemble(("hint: ", "bold"), hint))


def settings_problems(exc: SettingsError) -> None:
    """Print every problem of an invalid configuration."""
    console = stderr()
    count = len(exc.problems)
    noun = "problem" if count == 1 else "problems"
    console.print(
        Text.assemble(
            ("error: ", "bold red"), f"invalid configuration ({exc.source}): {count} {noun}"
        )
    )
    for problem in exc.problems:
        console.print(Text.assemble(("  - ", "red"), problem))


@contextmanager
def reporting() -> Iterator[None]:
    """Report failures in the block as messages with exit codes.

    Raises:
        typer.Exit: with :data:`EXIT_USAGE` for configuration and usage errors and
            :data:`EXIT_FAILURE` (or the error's own code) for everything else.
    """
    try:
        yield
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except CommandError as exc:
        if options.show_tracebacks:
            raise
        error(exc.message, hint=exc.hint)
        raise typer.Exit(exc.exit_code) from None
    except SettingsError as exc:
        if options.show_tracebacks:
            raise
        settings_problems(exc)
        raise typer.Exit(EXIT_USAGE) from None
    except sa_exc.DBAPIError as exc:
        if options.show_tracebacks:
            raise
        # str(exc) repeats the SQL and its parameters; the driver's message is the useful part.
        error(
            f"database error: {exc.orig}",
            hint="check [database] url and that the database is running",
        )
        raise typer.Exit(EXIT_FAILURE) from None
    except Exception as exc:
        if options.show_tracebacks:
            raise
        error(
            f"{type(exc).__name__}: {exc}{_where(exc)}",
            hint="run again with 'bastion --traceback ...' to see the full traceback",
        )
        raise typer.Exit(EXIT_FAILURE) from None


def _where(exc: BaseException) -> str:
    """`` (file, line N)`` of the innermost frame outside bastion and the libraries."""
    if isinstance(exc, SyntaxError):
        return ""  # its message already names the file and line
    frames = traceback.extract_tb(exc.__traceback__)
    # "<frozen importlib._bootstrap>" and the like are not files either.
    not_users = (
        "<",
        str(Path(__file__).parents[1]),
        str(Path(typer.__file__).parents[1]),
        sys.prefix,
        sys.base_prefix,
    )
    for frame in reversed(frames):
        if not frame.filename.startswith(not_users):
            return f" ({frame.filename}, line {frame.lineno})"
    return ""
