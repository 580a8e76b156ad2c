"""Load settings: TOML file, profile, ``${VAR}`` interpolation, ``BASTION_*`` overrides.

The order, lowest precedence first:

1. defaults from the section models;
2. the top-level tables of ``bastion.toml``;
3. ``[profile.<env>]`` of the selected environment (``BASTION_ENV``, default development);
4. ``BASTION_<SECTION>_<KEY>`` environment variables.

Every problem found on the way is collected, so one run of ``bastion config check``
lists all of them, not just the first.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from bastion.settings.sections import (
    BUILTIN_SECTIONS,
    DEVELOPMENT_SECRET,
    ENVIRONMENTS,
    Settings,
)

#: ``BASTION_*`` variables that are not settings.
RESERVED_ENV = {"BASTION_ENV", "BASTION_CONFIG", "BASTION_APP"}
RESERVED_ENV_PREFIXES = ("BASTION_TEST_",)

_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


class SettingsError(Exception):
    """The configuration is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: list[str], source: str = "bastion.toml") -> None:
        self.problems = problems
        self.source = source
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid configuration ({source}):\n{lines}")


def load_settings(
    path: str | Path | None = None,
    *,
    env: str | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    extensions: Mapping[str, type[BaseModel]] | None = None,
) -> Settings:
    """Load and validate settings.

    Args:
        path: The TOML file. ``None`` uses ``$BASTION_CONFIG`` when set, else defaults
            only (discovery of ``./bastion.toml`` belongs to the caller: the CLI and
            :meth:`bastion.App.load_settings`). An explicit path must exist.
        env: The environment; defaults to ``$BASTION_ENV``, then ``development``.
        environ: The environment variables (``os.environ`` by default).
        overrides: Nested values applied last, e.g. ``{"database": {"url": ...}}``;
            used by the test kit.
        extensions: App-declared sections, name to model.

    Raises:
        SettingsError: listing every problem at once.
    """
    environ = os.environ if environ is None else environ
    extensions = dict(extensions or {})
    problems: list[str] = []

    file = _resolve_path(path, environ)
    document: dict[str, Any] = {}
    if file is not None:
        try:
            document = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SettingsError([f"config file not found: {file}"], str(file)) from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError([f"not valid TOML: {exc}"], str(file)) from None

    selected = env or environ.get("BASTION_ENV") or "development"
    if selected not in ENVIRONMENTS:
        problems.append(
            f"BASTION_ENV: unknown environment {selected!r} (use {', '.join(ENVIRONMENTS)})"
        )
        selected = "development"

    profiles = document.pop("profile", {})
    if not isinstance(profiles, dict):
        problems.append("profile: must be a table of [profile.<environment>] tables")
        profiles = {}
    for name in profiles:
        if name not in ENVIRONMENTS:
            problems.append(f"profile.{name}: unknown environment (use {', '.join(ENVIRONMENTS)})")
    if "env" in document:
        problems.append("env: set the environment with BASTION_ENV, not in the file")
        document.pop("env")

    merged = _deep_merge(document, profiles.get(selected, {}) or {})
    merged = _interpolate(merged, environ, problems, path="")
    known = {**BUILTIN_SECTIONS, **extensions}
    _apply_env_overrides(merged, environ, known, problems)
    if overrides:
        merged = _deep_merge(merged, dict(overrides))
    _resolve_sqlite_path(merged, file)

    builtin: dict[str, Any] = {"env": selected}
    extension_values: dict[str, Any] = {}
    for section, value in merged.items():
        if section in BUILTIN_SECTIONS:
            builtin[section] = value
        elif section in extensions:
            extension_values[section] = value
        else:
            problems.append(f"{section}: unknown section")

    # Validate section by section so that one broken section does not hide the
    # problems of the others (production checks included).
    parsed: dict[str, Any] = {"env": selected}
    for name, section_value in builtin.items():
        if name == "env":
            continue
        try:
            parsed[name] = BUILTIN_SECTIONS[name].model_validate(section_value)
        except ValidationError as exc:
            problems.extend(_describe(exc, prefix=name))
    parsed_extensions = {}
    for name, model in extensions.items():
        try:
            parsed_extensions[name] = model.model_validate(extension_values.get(name, {}))
        except ValidationError as exc:
            problems.extend(_describe(exc, prefix=name))
    settings = Settings.model_validate({**parsed, "extensions": parsed_extensions})
    if settings.cache.backend == "redis" and not settings.redis.url:
        problems.append("cache.backend: 'redis' needs [redis] url")
    if settings.env == "production":
        problems.extend(_production_problems(settings))
    if problems:
        raise SettingsError(problems, str(file) if file else "defaults")
    return settings


def _resolve_path(path: str | Path | None, environ: Mapping[str, str]) -> Path | None:
    if path is not None:
        return Path(path)
    if environ.get("BASTION_CONFIG"):
        return Path(environ["BASTION_CONFIG"])
    return None


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def _interpolate(value: Any, environ: Mapping[str, str], problems: list[str], path: str) -> Any:
    if isinstance(value, dict):
        return {
            k: _interpolate(v, environ, problems, f"{path}.{k}" if path else k)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_interpolate(v, environ, problems, f"{path}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group("name"), match.group("default")
        if name in environ and environ[name] != "":
            return environ[name]
        if default is not None:
            return default
        problems.append(f"{path}: environment variable {name} is not set")
        return ""

    return _INTERPOLATION.sub(substitute, value)


def _apply_env_overrides(
    merged: dict[str, Any],
    environ: Mapping[str, str],
    known: Mapping[str, type[BaseModel]],
    problems: list[str],
) -> None:
    # Longest section names first, so BASTION_I18N_... never matches a shorter prefix.
    sections = sorted(known, key=len, reverse=True)
    for var, raw in environ.items():
        if not var.startswith("BASTION_") or var in RESERVED_ENV:
            continue
        if var.startswith(RESERVED_ENV_PREFIXES):
            continue
        rest = var.removeprefix("BASTION_").lower()
        section = next((s for s in sections if rest.startswith(f"{s}_")), None)
        key = rest[len(section) + 1 :] if section else ""
        if section is None or key not in known[section].model_fields:
            problems.append(f"{var}: does not name a setting (BASTION_<SECTION>_<KEY>)")
            continue
        merged.setdefault(section, {})
        if not isinstance(merged[section], dict):
            problems.append(f"{section}: must be a table")
            continue
        merged[section][key] = _parse_env_value(raw)


def _parse_env_value(raw: str) -> Any:
    stripped = raw.strip()
    if stripped.startswith(("[", "{")):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            return raw
    return raw


def _resolve_sqlite_path(merged: dict[str, Any], file: Path | None) -> None:
    database = merged.get("database")
    if file is None or not isinstance(database, dict):
        return
    url = database.get("url")
    if (
        not isinstance(url, str)
        or not url.startswith("sqlite:///")
        or url.startswith("sqlite:////")
    ):
        return
    relative = url.removeprefix("sqlite:///")
    if not relative or relative.startswith((":memory:", "file:")):
        return
    database["url"] = f"sqlite:///{(file.parent / relative).resolve()}"


def _describe(exc: ValidationError, prefix: str) -> list[str]:
    out = []
    for error in exc.errors():
        loc = ".".join(str(p) for p in error["loc"])
        where = f"{prefix}.{loc}" if prefix and loc else (prefix or loc)
        if error["type"] == "extra_forbidden":
            out.append(f"{where}: unknown setting")
        else:
            got = error.get("input")
            shown = "" if isinstance(got, dict) else f" (got {got!r})"
            out.append(f"{where}: {error['msg']}{shown}")
    return out


def _production_problems(settings: Settings) -> list[str]:
    problems = []
    secret = settings.app.secret_key.get_secret_value()
    if secret == DEVELOPMENT_SECRET or not secret:
        problems.append("app.secret_key: production needs a secret (set BASTION_APP_SECRET_KEY)")
    elif len(secret) < 32:
        problems.append("app.secret_key: production needs at least 32 characters")
    if settings.app.debug:
        problems.append("app.debug: must be off in production")
    if settings.errors.expose_internals:
        problems.append("errors.expose_internals: must be off in production")
    if "*" in settings.cors.allow_origins:
        problems.append("cors.allow_origins: production must list origins, not '*'")
    if settings.security.hsts is False:
        problems.append("security.hsts: must not be switched off in production")
    if settings.database.echo:
        problems.append("database.echo: must be off in production (it logs query parameters)")
    for name, provider in settings.oidc.providers.items():
        if provider.plain_http_remote:
            problems.append(
                f"oidc.providers.{name}.issuer: production needs https (http only on loopback)"
            )
    auth = settings.auth
    if auth.session_cookie_secure is False:
        problems.append("auth.session_cookie_secure: must not be switched off in production")
    if auth.session_backend == "memory" and settings.server.workers > 1:
        problems.append("auth.session_backend: 'memory' is per process; use database or redis")
    if auth.session_backend == "redis" and not settings.redis.url:
        problems.append("auth.session_backend: 'redis' needs [redis] url")
    jwt_secret = auth.jwt_secret.get_secret_value() if auth.jwt_secret else None
    if jwt_secret is not None and len(jwt_secret) < 32:
        problems.append("auth.jwt_secret: production needs at least 32 characters")
    # Console, file and memory backends are allowed: an app may simply not send mail.
    if settings.mail.plain_smtp_remote:
        problems.append(
            "mail.smtp_tls: production needs 'starttls' or 'tls' (plain SMTP only on loopback)"
        )
    return problems
