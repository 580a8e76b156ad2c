"""``bastion config``: validate the configuration, or show it with secrets hidden.

Both commands load settings exactly as the server does (file, profile,
``${VAR}`` interpolation, ``BASTION_*`` overrides), with the app's own sections
when an app can be found. Without one, only bastion's sections are known.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.syntax import Syntax
from rich.text import Text

from bastion.cli.discovery import AppArgument, ConfigOption, app_target, config_file, locate
from bastion.cli.output import EXIT_USAGE, CommandError, reporting, stdout
from bastion.settings import Settings, load_settings, redacted
from bastion.settings.sections import ENVIRONMENTS

group = typer.Typer(
    name="config",
    help="Check the configuration, or show the effective settings (secrets redacted).",
    no_args_is_help=True,
)

EnvOption = Annotated[
    str | None,
    typer.Option(
        "--env",
        "-e",
        show_default=False,
        help=f"Environment profile to load ({', '.join(ENVIRONMENTS)}; default: $BASTION_ENV).",
    ),
]


@group.command("check")
def check(app: AppArgument = None, env: EnvOption = None, config: ConfigOption = None) -> None:
    """Validate the configuration; list every problem and exit 2 if there is any."""
    with reporting():
        settings, source = _load(env, app, config)
        console = stdout()
        console.print(Text.assemble(("configuration OK", "bold green"), f" ({settings.env})"))
        console.print(Text(f"file: {source}", style="dim"))


@group.command("show")
def show(
    app: AppArgument = None,
    env: EnvOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of TOML.")] = False,
    config: ConfigOption = None,
) -> None:
    """Print the effective settings, secrets and URL passwords replaced by ********."""
    with reporting():
        settings, source = _load(env, app, config)
        values = redacted(settings)
        if as_json:
            # Plain output, not Rich: the JSON is meant for other programs.
            typer.echo(json.dumps(values, indent=2))
            return
        header = f"# effective settings: env {values.pop('env')}, file {source}\n"
        extensions = values.pop("extensions", {}) or {}
        text = header + "".join(_toml_tables({**values, **extensions}))
        stdout().print(
            Syntax(text, "toml", theme="ansi_dark", background_color="default", word_wrap=True)
        )


def _load(env: str | None, app: str | None, config: Path | None) -> tuple[Settings, str]:
    if env is not None and env not in ENVIRONMENTS:
        raise CommandError(
            f"--env: unknown environment {env!r} (use {', '.join(ENVIRONMENTS)})",
            exit_code=EXIT_USAGE,
        )
    file = config_file(config)
    if app_target(app, file) is None:
        settings = load_settings(file, env=env)
    else:
        project = locate(app, config)
        file = project.config
        settings = project.settings(env=env)
    return settings, str(file) if file else "(none: defaults and BASTION_* variables)"


def _toml_tables(values: Mapping[str, Any]) -> Iterator[str]:
    for section, table in values.items():
        yield f"\n[{section}]\n"
        if not isinstance(table, Mapping):
            yield f"# {_toml_value(table)}\n"
            continue
        for key, value in table.items():
            if value is None:
                # TOML has no null; show the setting anyway, so it can be found.
                yield f"# {key} = (not set)\n"
            else:
                yield f"{key} = {_toml_value(value)}\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    # A JSON string is a valid TOML basic string.
    return json.dumps(str(value), ensure_ascii=False)
