"""Every command has help, and failures are messages with exit codes, not tracebacks."""

from __future__ import annotations

from pathlib import Path

import pytest

import bastion as bastion_package
from tests.cli.conftest import Runner

COMMANDS = [
    [],
    ["run"],
    ["dev"],
    ["migrate"],
    ["migrate", "up"],
    ["migrate", "down"],
    ["migrate", "status"],
    ["migrate", "make"],
    ["routes"],
    ["config"],
    ["config", "check"],
    ["config", "show"],
    ["openapi"],
    ["new"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "bastion")
def test_help(bastion: Runner, command: list[str]) -> None:
    result = bastion(*command, "--help")

    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout
    assert "bastion" in result.stdout


def test_version(bastion: Runner) -> None:
    result = bastion("--version")

    assert result.exit_code == 0
    assert result.stdout.strip() == f"bastion {bastion_package.__version__}"


def test_no_app_anywhere(bastion: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    result = bastion("routes")

    assert result.exit_code == 2
    assert "error: no app to work on" in result.stderr
    assert "BASTION_APP" in result.stderr


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("nosuchpackage.app:app", "cannot import 'nosuchpackage.app': no such module"),
        ("not a target", "APP must look like 'package.module:attr'"),
        ("cliapp.app:missing", "module 'cliapp.app' has no attribute 'missing'"),
        ("cliapp.app:Item", "cliapp.app:Item is the class Item, not a bastion App"),
        ("cliapp.app:router", "cliapp.app:router is a APIRouter, not a bastion App"),
    ],
)
def test_a_wrong_app_is_a_usage_error(
    bastion: Runner, project: Path, target: str, message: str
) -> None:
    result = bastion("routes", target)

    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_the_app_comes_from_the_environment(bastion: Runner, project: Path) -> None:
    (project / "bastion.toml").unlink()

    result = bastion("routes", env={"BASTION_APP": "cliapp.app:app"})

    assert result.exit_code == 0, result.output
    assert "create_item" in result.stdout


def test_attr_defaults_to_app(bastion: Runner, project: Path) -> None:
    result = bastion("routes", "cliapp.app")

    assert result.exit_code == 0, result.output


def test_an_error_in_the_apps_code_names_its_location(bastion: Runner, project: Path) -> None:
    broken = project / "cliapp" / "broken.py"
    broken.write_text(
        "from __future__ import annotations\n\nvalue = undefined_name\n", encoding="utf-8"
    )

    result = bastion("routes", "cliapp.broken:app")

    assert result.exit_code == 1
    assert "NameError: name 'undefined_name' is not defined" in result.stderr
    assert f"{broken}, line 3" in result.stderr
    assert "--traceback" in result.stderr
    assert "Traceback" not in result.output


def test_traceback_option_shows_the_exception(bastion: Runner, project: Path) -> None:
    (project / "cliapp" / "broken.py").write_text("value = undefined_name\n", encoding="utf-8")

    result = bastion("--traceback", "routes", "cliapp.broken:app")

    assert result.exit_code == 1
    assert isinstance(result.exception, NameError)


def test_run_refuses_an_invalid_configuration_before_serving(
    bastion: Runner, project: Path
) -> None:
    (project / "bastion.toml").write_text(
        '[app]\nmodule = "cliapp.app:app"\n\n[server]\nworkers = "many"\ncolour = "blue"\n',
        encoding="utf-8",
    )

    result = bastion("run", env={"BASTION_ENV": "production"})

    assert result.exit_code == 2
    assert "server.workers: Input should be a valid integer" in result.stderr
    assert "server.colour: unknown setting" in result.stderr
    assert "app.secret_key: production needs a secret" in result.stderr


def test_run_validates_its_options(bastion: Runner, project: Path) -> None:
    result = bastion("run", "--port", "70000")

    assert result.exit_code == 2
    assert "65535" in result.output
