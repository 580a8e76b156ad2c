"""Find the app a command works on, and its configuration file.

Every command resolves them the same way:

- the app: the ``APP`` argument (``package.module:attr``), else ``$BASTION_APP``,
  else ``module`` in the ``[app]`` table of the configuration file;
- the configuration file: ``--config``, else ``$BASTION_CONFIG``, else
  ``./bastion.toml`` when it exists, else the app's own ``App(config=...)``.

The current directory is put on ``sys.path`` first, so ``bastion run shop.app:app``
works from a project folder without installing the project.
"""

from __future__ import annotations

import importlib
import os
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from fastapi import FastAPI

from bastion.app import App, Runtime
from bastion.cli.output import EXIT_USAGE, CommandError
from bastion.settings import Settings, SettingsError

APP_HELP = "The app, as [bold]package.module:attr[/] (default: $BASTION_APP, then \\[app] module)."
CONFIG_HELP = (
    "Configuration file (default: $BASTION_CONFIG, then ./bastion.toml, then the app's own)."
)

#: ``APP``, the optional first argument of every command (``bastion run shop.app:app``).
AppArgument = Annotated[
    str | None, typer.Argument(help=APP_HELP, show_default=False, metavar="APP")
]
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help=CONFIG_HELP, show_default=False, dir_okay=False),
]

_NO_APP_HINT = (
    "pass APP as package.module:attr (e.g. 'shop.app:app'), set BASTION_APP, "
    'or set module = "package.module:attr" in the [app] table of bastion.toml'
)


@dataclass(frozen=True)
class Project:
    """The app a command works on and the configuration file it reads.

    Attributes:
        app: The imported :class:`bastion.App`.
        target: Where it was imported from, ``package.module:attr``.
        config: The configuration file, or ``None`` for defaults and ``BASTION_*``
            variables only.
    """

    app: App
    target: str
    config: Path | None

    def settings(self, *, env: str | None = None) -> Settings:
        """Load and validate the settings, with the app's own sections.

        Raises:
            SettingsError: listing every problem.
        """
        return self.app.load_settings(self.config, env=env)

    def runtime(self, settings: Settings | None = None) -> Runtime:
        """Wire the app to its settings; nothing connects until it is used."""
        return self.app.runtime(settings or self.settings())

    def api(self, settings: Settings | None = None) -> FastAPI:
        """The app's FastAPI application (routes and OpenAPI), without serving it."""
        return self.runtime(settings).api()


def locate(app: str | None, config: Path | None) -> Project:
    """Resolve the app and the configuration file from options and the environment.

    Raises:
        CommandError: when no app is named, or it cannot be imported.
        SettingsError: when the configuration file is not valid TOML.
    """
    file = config_file(config)
    target = app_target(app, file)
    if target is None:
        raise CommandError("no app to work on", exit_code=EXIT_USAGE, hint=_NO_APP_HINT)
    found = import_app(target)
    if file is None and found.config is not None and found.config.exists():
        file = found.config.resolve()
    return Project(app=found, target=target, config=file)


def config_file(option: Path | None) -> Path | None:
    """The configuration file named by ``--config``, ``$BASTION_CONFIG`` or ``./bastion.toml``.

    Raises:
        CommandError: when a named file does not exist.
    """
    named = option or (
        Path(os.environ["BASTION_CONFIG"]) if os.environ.get("BASTION_CONFIG") else None
    )
    if named is not None:
        if not named.is_file():
            source = "--config" if option else "BASTION_CONFIG"
            raise CommandError(
                f"configuration file not found: {named} (from {source})", exit_code=EXIT_USAGE
            )
        return named.resolve()
    default = Path("bastion.toml")
    return default.resolve() if default.is_file() else None


def app_target(option: str | None, file: Path | None) -> str | None:
    """``package.module:attr`` from the option, ``$BASTION_APP`` or the file's ``[app] module``."""
    if option:
        return option
    if os.environ.get("BASTION_APP"):
        return os.environ["BASTION_APP"]
    if file is None:
        return None
    try:
        document = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError([f"not valid TOML: {exc}"], str(file)) from None
    section = document.get("app")
    module = section.get("module") if isinstance(section, dict) else None
    return module if isinstance(module, str) and module else None


def import_app(target: str) -> App:
    """Import ``package.module:attr`` (``attr`` defaults to ``app``) and check it is an App.

    Raises:
        CommandError: when the module or attribute does not exist or is not an App.
    """
    module_name, _, attr = target.partition(":")
    attr = attr or "app"
    if not _is_dotted_name(module_name) or not _is_dotted_name(attr):
        raise CommandError(
            f"APP must look like 'package.module:attr', got {target!r}", exit_code=EXIT_USAGE
        )
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only a missing *target* module is the user's typo; a missing module
        # imported by their code is a real error in it, reported with its location.
        if exc.name and (module_name == exc.name or module_name.startswith(f"{exc.name}.")):
            raise CommandError(
                f"cannot import {module_name!r}: no such module",
                exit_code=EXIT_USAGE,
                hint=f"run bastion from the folder that contains the package (looked in {cwd})",
            ) from None
        raise
    found: Any = module
    for part in attr.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise CommandError(
                f"module {module_name!r} has no attribute {attr!r}", exit_code=EXIT_USAGE
            ) from None
    if not isinstance(found, App):
        what = (
            f"the class {found.__name__}"
            if isinstance(found, type)
            else f"a {type(found).__name__}"
        )
        raise CommandError(f"{target} is {what}, not a bastion App", exit_code=EXIT_USAGE)
    return found


def _is_dotted_name(value: str) -> bool:
    return bool(value) and all(part.isidentifier() for part in value.split("."))
