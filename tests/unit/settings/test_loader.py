"""Settings: profiles, interpolation, environment overrides, every problem listed at once."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from bastion.settings import SettingsError, load_settings, redacted

GOOD_SECRET = "s" * 40


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bastion.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_a_file() -> None:
    settings = load_settings(None, environ={})
    assert settings.env == "development"
    assert settings.database.url == "sqlite:///bastion.db"
    assert settings.server.max_body_bytes == 10 * 1024 * 1024


def test_profile_overrides_base_and_environment_overrides_profile(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
[server]
port = 8000
workers = 1
[profile.staging]
server.port = 9000
server.workers = 3
""",
    )
    staging = load_settings(path, env="staging", environ={"BASTION_SERVER_WORKERS": "5"})
    assert (staging.server.port, staging.server.workers) == (9000, 5)
    development = load_settings(path, environ={})
    assert (development.server.port, development.server.workers) == (8000, 1)


def test_bastion_env_selects_the_profile(tmp_path: Path) -> None:
    path = _write(tmp_path, "[profile.staging]\nserver.port = 9100\n")
    assert load_settings(path, environ={"BASTION_ENV": "staging"}).server.port == 9100


def test_interpolation_with_and_without_default(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
[database]
url = "postgresql://app:${DB_PASSWORD}@${DB_HOST:-localhost}/shop"
""",
    )
    settings = load_settings(path, environ={"DB_PASSWORD": "pw"})
    assert settings.database.url == "postgresql://app:pw@localhost/shop"
    with pytest.raises(SettingsError) as error:
        load_settings(path, environ={})
    assert error.value.problems == ["database.url: environment variable DB_PASSWORD is not set"]


def test_relative_sqlite_path_resolves_against_the_config_folder(tmp_path: Path) -> None:
    path = _write(tmp_path, '[database]\nurl = "sqlite:///var/app.db"\n')
    assert (
        load_settings(path, environ={}).database.url == f"sqlite:///{tmp_path / 'var' / 'app.db'}"
    )


def test_environment_values_are_parsed_as_lists(tmp_path: Path) -> None:
    settings = load_settings(
        None, environ={"BASTION_ERRORS_LOG_CODES": '["not_found", "conflict"]'}
    )
    assert settings.errors.log_codes == ["not_found", "conflict"]


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
[server]
port = "eighty"
colour = "blue"
[databse]
url = "x"
[profile.prod]
server.port = 1
""",
    )
    with pytest.raises(SettingsError) as error:
        load_settings(path, env="production", environ={"BASTION_SERVR_PORT": "1"})
    problems = error.value.problems
    assert "BASTION_SERVR_PORT: does not name a setting (BASTION_<SECTION>_<KEY>)" in problems
    assert "databse: unknown section" in problems
    assert "server.colour: unknown setting" in problems
    assert any(p.startswith("server.port: Input should be a valid integer") for p in problems)
    assert any(p.startswith("profile.prod: unknown environment") for p in problems)
    assert "app.secret_key: production needs a secret (set BASTION_APP_SECRET_KEY)" in problems
    assert len(problems) == 6
    assert str(path) in str(error.value)


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        (
            {"BASTION_APP_SECRET_KEY": "short"},
            "app.secret_key: production needs at least 32 characters",
        ),
        (
            {"BASTION_APP_SECRET_KEY": GOOD_SECRET, "BASTION_APP_DEBUG": "true"},
            "app.debug: must be off in production",
        ),
        (
            {"BASTION_APP_SECRET_KEY": GOOD_SECRET, "BASTION_DATABASE_ECHO": "true"},
            "database.echo: must be off in production (it logs query parameters)",
        ),
    ],
)
def test_production_refuses_insecure_settings(environ: dict[str, str], problem: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings(None, env="production", environ=environ)
    assert error.value.problems == [problem]


def test_production_starts_with_a_real_secret() -> None:
    settings = load_settings(
        None, env="production", environ={"BASTION_APP_SECRET_KEY": GOOD_SECRET}
    )
    assert settings.env == "production"
    assert not settings.expose_internals


def test_unknown_environment_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="unknown environment 'prod'"):
        load_settings(None, environ={"BASTION_ENV": "prod"})
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(_write(tmp_path, "[server\n"), environ={})
    with pytest.raises(SettingsError, match="config file not found"):
        load_settings(tmp_path / "missing.toml", environ={})


def test_app_sections_are_validated_by_their_own_models(tmp_path: Path) -> None:
    class ShopConfig(BaseModel):
        model_config = ConfigDict(extra="forbid")
        warehouse_zip: str = "10001"

    path = _write(tmp_path, '[shop]\nwarehouse_zip = "94103"\n')
    settings = load_settings(path, environ={}, extensions={"shop": ShopConfig})
    assert settings.section("shop").warehouse_zip == "94103"
    assert (
        load_settings(
            None, environ={"BASTION_SHOP_WAREHOUSE_ZIP": "12345"}, extensions={"shop": ShopConfig}
        )
        .section("shop")
        .warehouse_zip
        == "12345"
    )
    with pytest.raises(SettingsError) as error:
        load_settings(
            _write(tmp_path, "[shop]\nzip = 1\n"), environ={}, extensions={"shop": ShopConfig}
        )
    assert error.value.problems == ["shop.zip: unknown setting"]


def test_redaction_hides_secrets_and_url_passwords() -> None:
    settings = load_settings(
        None,
        environ={
            "BASTION_APP_SECRET_KEY": GOOD_SECRET,
            "BASTION_DATABASE_URL": "postgresql://shop:hunter2@db:5432/shop",
            "BASTION_REDIS_URL": "redis://:redispw@cache:6379/0",
        },
    )
    shown = redacted(settings)
    assert shown["app"]["secret_key"] == "********"
    assert shown["database"]["url"] == "postgresql://shop:********@db:5432/shop"
    assert shown["redis"]["url"] == "redis://:********@cache:6379/0"
    assert "hunter2" not in repr(shown)
    assert GOOD_SECRET not in repr(shown)
