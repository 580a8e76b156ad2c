"""``bastion config check`` and ``bastion config show``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import Runner

SECRET = "a-production-secret-that-is-long-enough-0123456789"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_check_accepts_a_valid_file(bastion: Runner, folder: Path) -> None:
    write(
        folder / "bastion.toml", '[server]\nport = 9000\n\n[database]\nurl = "sqlite:///var/x.db"\n'
    )

    result = bastion("config", "check")

    assert result.exit_code == 0, result.output
    assert "configuration OK (development)" in result.stdout
    assert str(folder / "bastion.toml") in result.stdout


def test_check_lists_every_problem_and_exits_2(bastion: Runner, folder: Path) -> None:
    config = write(
        folder / "broken.toml", '[database]\npool_sise = 5\n\n[server]\nport = "eighty"\n'
    )

    result = bastion("config", "check", "--env", "production", "--config", str(config))

    assert result.exit_code == 2
    problems = result.stderr
    assert "3 problems" in problems
    assert "database.pool_sise: unknown setting" in problems
    assert "server.port: Input should be a valid integer" in problems
    assert "app.secret_key: production needs a secret" in problems
    assert "Traceback" not in result.output


def test_check_reads_the_environment_like_the_server(bastion: Runner, folder: Path) -> None:
    write(folder / "bastion.toml", "[app]\nversion = '1.0.0'\n")

    result = bastion(
        "config", "check", env={"BASTION_ENV": "production", "BASTION_APP_SECRET_KEY": SECRET}
    )

    assert result.exit_code == 0, result.output
    assert "configuration OK (production)" in result.stdout


def test_check_refuses_an_unknown_environment(bastion: Runner, folder: Path) -> None:
    result = bastion("config", "check", "--env", "prod")

    assert result.exit_code == 2
    assert "unknown environment 'prod'" in result.stderr


def test_check_reports_invalid_toml(bastion: Runner, folder: Path) -> None:
    write(folder / "bastion.toml", "[server\nport = 1\n")

    result = bastion("config", "check")

    assert result.exit_code == 2
    assert "not valid TOML" in result.stderr


def test_check_reports_a_missing_file(bastion: Runner, folder: Path) -> None:
    result = bastion("config", "check", "--config", "nowhere.toml")

    assert result.exit_code == 2
    assert "configuration file not found" in result.stderr


def test_check_knows_the_apps_own_sections(bastion: Runner, project: Path) -> None:
    # The project's bastion.toml names the app in [app] module, so the app is
    # imported and its settings are loaded the way the server loads them.
    result = bastion("config", "check")

    assert result.exit_code == 0, result.output
    assert str(project / "bastion.toml") in result.stdout


@pytest.mark.parametrize("as_json", [False, True], ids=["toml", "json"])
def test_show_redacts_secrets(bastion: Runner, folder: Path, as_json: bool) -> None:
    write(
        folder / "bastion.toml",
        f'[app]\nsecret_key = "{SECRET}"\n\n'
        '[database]\nurl = "postgresql://shop:pa55word@db.internal:5432/shop"\n',
    )

    result = bastion("config", "show", *(["--json"] if as_json else []))

    assert result.exit_code == 0, result.output
    assert SECRET not in result.output
    assert "pa55word" not in result.output
    assert "postgresql://shop:********@db.internal:5432/shop" in result.stdout
    if as_json:
        shown = json.loads(result.stdout)
        assert shown["app"]["secret_key"] == "********"
        assert shown["server"]["port"] == 8000
        assert shown["env"] == "development"
    else:
        assert 'secret_key = "********"' in result.stdout
        server = result.stdout.split("[server]\n", 1)[1].split("\n\n", 1)[0]
        assert "port = 8000" in server.splitlines()


def test_show_uses_the_selected_profile(bastion: Runner, folder: Path) -> None:
    write(
        folder / "bastion.toml", "[server]\nport = 8000\n\n[profile.staging.server]\nport = 8100\n"
    )

    result = bastion("config", "show", "--json", "--env", "staging")

    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert (shown["env"], shown["server"]["port"]) == ("staging", 8100)
