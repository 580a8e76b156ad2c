"""``bastion openapi``: write the app's OpenAPI 3.1 document.

The document is generated from the same FastAPI application the server runs,
without starting it or touching the database, so CI can diff it or feed it to a
client generator.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from bastion.cli.discovery import AppArgument, ConfigOption, locate
from bastion.cli.output import reporting, stderr

OutputOption = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        dir_okay=False,
        show_default=False,
        help="Write to this file instead of standard output.",
    ),
]


def openapi(
    app: AppArgument = None, output: OutputOption = None, config: ConfigOption = None
) -> None:
    """Print (or write with -o) the app's OpenAPI 3.1 document as JSON."""
    with reporting():
        project = locate(app, config)
        document = project.api().openapi()
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        if output is None:
            # Plain output, not Rich: the JSON is meant for other programs.
            typer.echo(text, nl=False)
            return
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
        count = len(document.get("paths", {}))
        version = document.get("openapi", "")
        stderr().print(
            Text.assemble(("Wrote", "green"), f" OpenAPI {version} ({count} paths) to {output}")
        )
