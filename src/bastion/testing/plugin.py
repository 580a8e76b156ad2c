"""The ``bastion.testing`` pytest plugin (registered through the ``pytest11`` entry point).

Override ``bastion_app`` to return your :class:`bastion.App`; then use:

- ``runtime``: a started :class:`bastion.Runtime` on a fresh, migrated database;
- ``client``: a :class:`~bastion.testing.client.BastionClient` bound to it;
- ``live_url``: the same app served over a real socket on 127.0.0.1;
- ``clock``: frozen time you can shift;
- ``bastion_settings_overrides``: override to change settings for a test module.

Settings in tests use cheap argon2 parameters (8 MiB, one pass) unless a test's
overrides set ``[auth]`` values itself.

Async tests run on asyncio through anyio without needing a marker. Tests that use
a database are marked ``db``; ``BASTION_TEST_DATABASE=postgres`` runs them on
PostgreSQL (skipped with the reason when it is unreachable, and failed instead when
``CI=true``).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from bastion.app import App, Runtime
from bastion.settings import Settings, load_settings
from bastion.testing.client import BastionClient, live_server
from bastion.testing.clock import Clock
from bastion.testing.databases import (
    DEFAULT_REDIS_URL,
    DatabaseFactory,
    postgres_unavailable_reason,
    redis_unavailable_reason,
    selected_backend,
)

_DB_FIXTURES = {
    "bastion_database_url",
    "runtime",
    "client",
    "live_url",
    "bastion_settings",
    "make_runtime",
}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_service(reason: str | None) -> None:
    """Skip the test when a service is missing, or fail it when running in CI."""
    if reason is None:
        return
    if in_ci():
        pytest.fail(f"CI=true requires this service: {reason}", pytrace=False)
    pytest.skip(reason)


def pytest_configure(config: pytest.Config) -> None:
    for line in (
        "db: the test uses a database and runs on every configured backend",
        "postgres: the test needs PostgreSQL",
        "redis: the test needs Redis",
        "slow: the test takes more than a few seconds",
    ):
        config.addinivalue_line("markers", line)


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    # Coroutine tests run through anyio's plugin. Requesting ``anyio_backend`` here,
    # at collection, matters: for a marked test that lacks it, anyio rebuilds the
    # test's parameters at the end of collection and drops the test's own.
    if inspect.iscoroutinefunction(obj) and name.startswith("test"):
        pytest.mark.anyio(obj)
        pytest.mark.usefixtures("anyio_backend")(obj)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _DB_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.db)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def bastion_app() -> App:
    """Override this fixture to return the App under test."""
    raise pytest.UsageError("define a `bastion_app` fixture that returns your bastion.App")


@pytest.fixture
def bastion_settings_overrides() -> dict[str, Any]:
    """Override to change settings, e.g. ``{"server": {"max_body_bytes": 2048}}``."""
    return {}


@pytest.fixture(scope="session")
def bastion_databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseFactory]:
    backend, admin_url = selected_backend()
    if backend == "postgres":
        assert admin_url is not None
        reason = postgres_unavailable_reason(admin_url)
        if reason is not None:
            # Defer the decision to each test, so that the reason is reported per test.
            factory = DatabaseFactory(tmp_path_factory.mktemp("db"), backend, admin_url)
            factory.unavailable = reason  # type: ignore[attr-defined]
            yield factory
            return
    factory = DatabaseFactory(tmp_path_factory.mktemp("db"), backend, admin_url)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def bastion_database_url(bastion_app: App, bastion_databases: DatabaseFactory) -> Iterator[str]:
    """A fresh database with the app's schema, dropped after the test."""
    require_service(getattr(bastion_databases, "unavailable", None))
    url = bastion_databases.fresh(bastion_app)
    try:
        yield url
    finally:
        bastion_databases.drop(url)


def _test_settings(
    app: App,
    database_url: str,
    overrides: dict[str, Any],
    *,
    env: str = "development",
    environ: dict[str, str] | None = None,
) -> Settings:
    merged: dict[str, Any] = {key: dict(value) for key, value in overrides.items()}
    merged.setdefault("database", {}).setdefault("url", database_url)
    merged["database"].setdefault("auto_migrate", False)
    merged.setdefault("log", {}).setdefault("access_log", False)
    # Production-strength argon2 (64 MiB, 3 passes) would dominate a suite that
    # creates users in many tests; the cheapest valid parameters keep behaviour equal.
    cheap_hashing = {"argon2_memory_kib": 8192, "argon2_time_cost": 1, "argon2_parallelism": 1}
    merged["auth"] = {**cheap_hashing, **merged.get("auth", {})}
    # The app's own bastion.toml, never one found in the working directory: a test
    # must not change meaning with the folder pytest was started from.
    config = app.config if app.config and app.config.exists() else None
    return load_settings(
        config, env=env, environ=environ or {}, overrides=merged, extensions=app.config_sections
    )


@pytest.fixture
def bastion_settings(
    bastion_app: App, bastion_database_url: str, bastion_settings_overrides: dict[str, Any]
) -> Settings:
    return _test_settings(bastion_app, bastion_database_url, bastion_settings_overrides)


class RuntimeFactory:
    """Builds runtimes on the test's database; every one is shut down after the test."""

    def __init__(self, app: App, database_url: str, overrides: dict[str, Any]) -> None:
        self.app = app
        self.database_url = database_url
        self.overrides = overrides
        self.made: list[Runtime] = []

    def __call__(
        self,
        app: App | None = None,
        *,
        env: str = "development",
        environ: dict[str, str] | None = None,
        **sections: dict[str, Any],
    ) -> Runtime:
        """A runtime (not started) with ``sections`` merged over the module's overrides."""
        target = app or self.app
        overrides = dict(self.overrides)
        for name, values in sections.items():
            overrides[name] = {**overrides.get(name, {}), **values}
        settings = _test_settings(target, self.database_url, overrides, env=env, environ=environ)
        runtime = target.runtime(settings)
        self.made.append(runtime)
        return runtime


@pytest.fixture
async def make_runtime(
    bastion_app: App, bastion_database_url: str, bastion_settings_overrides: dict[str, Any]
) -> AsyncIterator[RuntimeFactory]:
    """``make_runtime(env="production", environ={...}, server={...})``: more runtimes per test.

    Each is shut down (its connections closed) after the test, even when the test
    used it again after shutting it down itself.
    """
    factory = RuntimeFactory(bastion_app, bastion_database_url, bastion_settings_overrides)
    try:
        yield factory
    finally:
        for made in factory.made:
            await made.shutdown()


@pytest.fixture
async def runtime(bastion_app: App, bastion_settings: Settings) -> AsyncIterator[Runtime]:
    """A started runtime on a fresh database."""
    rt = bastion_app.runtime(bastion_settings)
    await rt.startup()
    try:
        yield rt
    finally:
        await rt.shutdown()


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[BastionClient]:
    """An HTTP client bound to ``runtime`` in-process (no sockets)."""
    async with BastionClient(runtime.asgi()) as http:
        yield http


@pytest.fixture
def live_url(bastion_app: App, bastion_settings: Settings) -> Iterator[str]:
    """The app served by uvicorn on a free 127.0.0.1 port (for tests needing real sockets)."""
    rt = bastion_app.runtime(bastion_settings)
    with live_server(rt.asgi()) as url:
        yield url


@pytest.fixture
def redis_url() -> str:
    """The test Redis (``BASTION_TEST_REDIS_URL``, default 127.0.0.1:6379/0).

    Skips the test without one, and fails it instead under ``CI=true``.
    """
    url = os.environ.get("BASTION_TEST_REDIS_URL", DEFAULT_REDIS_URL)
    require_service(redis_unavailable_reason(url))
    return url


@pytest.fixture
def clock() -> Iterator[Clock]:
    """Frozen time starting at 2030-01-01T00:00:00Z; shift it with ``clock.shift(...)``."""
    import time_machine

    with time_machine.travel(datetime(2030, 1, 1, tzinfo=UTC), tick=False) as traveller:
        yield Clock(traveller)
