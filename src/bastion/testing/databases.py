"""Fresh databases for tests: build a migrated template once per run, clone it per test.

SQLite: the template is a file, copied for each test. PostgreSQL: the template is a
database, cloned with ``CREATE DATABASE ... TEMPLATE`` and dropped after the test.
Which backend is used comes from ``BASTION_TEST_DATABASE``: ``sqlite`` (default),
``postgres`` (``postgresql://postgres@127.0.0.1:5432/test``) or a PostgreSQL URL.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url

from bastion.app import App
from bastion.db.database import Database
from bastion.db.migrations import Migrator
from bastion.settings.sections import DatabaseSection

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def selected_backend() -> tuple[str, str | None]:
    """``("sqlite", None)`` or ``("postgres", admin_url)`` from ``BASTION_TEST_DATABASE``."""
    choice = os.environ.get("BASTION_TEST_DATABASE", "sqlite").strip()
    if choice in ("", "sqlite"):
        return "sqlite", None
    if choice == "postgres":
        return "postgres", os.environ.get("BASTION_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    if choice.startswith(("postgres://", "postgresql://", "postgresql+psycopg://")):
        return "postgres", choice
    raise ValueError(
        f"BASTION_TEST_DATABASE: expected sqlite, postgres or a PostgreSQL URL, got {choice!r}"
    )


def postgres_unavailable_reason(admin_url: str) -> str | None:
    """Why PostgreSQL cannot be used (``None`` when it can)."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'bastion[postgres]')"
    try:
        with psycopg.connect(_libpq(admin_url), connect_timeout=3):
            return None
    except Exception as exc:
        return f"PostgreSQL is not reachable at {_libpq(admin_url)}: {exc}".strip()


def redis_unavailable_reason(url: str) -> str | None:
    """Why Redis cannot be used (``None`` when it can)."""
    try:
        import redis
    except ImportError:
        return "redis-py is not installed (pip install 'bastion[redis]')"
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
        return None
    except Exception as exc:
        return f"Redis is not reachable at {url}: {exc}"
    finally:
        client.close()


def _libpq(url: str) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


def migrate(app: App, url: str) -> None:
    """Bring a database to the app's current schema (platform and app migrations)."""
    database = Database(DatabaseSection(url=url, pool_size=1, max_overflow=0))
    try:
        Migrator(
            database, branch=app.name, versions_dir=app.migrations, metadata=app.metadata
        ).upgrade()
        if app.metadata is not None and app.migrations is None:
            app.metadata.create_all(database.write_engine)
    finally:
        database.dispose()


def _fingerprint(app: App) -> str:
    revisions = sorted(p.name for p in app.migrations.glob("*.py")) if app.migrations else []
    tables = sorted(app.metadata.tables) if app.metadata is not None else []
    raw = f"{app.name}|{app.migrations}|{revisions}|{tables}"
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


#: Databases cloned ahead per template on PostgreSQL, and the threads cloning them.
SPARE_DATABASES = 3
CLONING_THREADS = 2


@dataclass
class DatabaseFactory:
    """Makes one fresh, migrated database per test; one template per app per run.

    On PostgreSQL a clone (``CREATE DATABASE ... TEMPLATE``) takes tens of milliseconds
    on an idle machine but up to a second on a busy one, and a drop about as long. Most
    tests are quicker than that, so a few clones are kept ready, made by two threads
    while tests run, and drops go to a thread of their own so they never hold up a
    clone.
    """

    workdir: Path
    backend: str
    admin_url: str | None
    _templates: dict[str, str] = field(default_factory=dict)
    _created: list[str] = field(default_factory=list)
    _spares: dict[str, deque[Future[str]]] = field(default_factory=dict)
    _uses: dict[str, int] = field(default_factory=dict)
    _cloning: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(
            CLONING_THREADS, thread_name_prefix="bastion-test-db-clone"
        )
    )
    _dropping: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="bastion-test-db-drop")
    )

    def fresh(self, app: App, name: str | None = None) -> str:
        """A new database URL with the app's schema, independent of every other test."""
        template = self._template(app)
        suffix = name or uuid.uuid4().hex[:10]
        if self.backend == "sqlite":
            target = self.workdir / f"test_{suffix}.db"
            shutil.copyfile(template, target)
            return f"sqlite:///{target}"
        assert self.admin_url is not None
        database = self._spare(template) if name is None else None
        if database is None:
            database = self._clone(template, f"bt_{suffix}")
        self._created.append(database)
        if name is None:
            self._clone_ahead(template)
        return make_url(self.admin_url).set(database=database).render_as_string(hide_password=False)

    def drop(self, url: str) -> None:
        """Remove a database made by :meth:`fresh`."""
        if self.backend == "sqlite":
            path = Path(make_url(url).database or "")
            for extra in ("", "-wal", "-shm"):
                Path(f"{path}{extra}").unlink(missing_ok=True)
            return
        name = make_url(url).database
        if name in self._created:
            self._created.remove(name)
            self._dropping.submit(self._execute, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        self._cloning.shutdown(wait=True)
        self._dropping.shutdown(wait=True)
        if self.backend == "postgres":
            spares = [
                spare.result()
                for queue in self._spares.values()
                for spare in queue
                if not spare.exception()
            ]
            for name in [*spares, *self._created, *self._templates.values()]:
                self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            self._created.clear()
            self._spares.clear()
        self._templates.clear()

    def _spare(self, template: str) -> str | None:
        """The oldest database cloned ahead for ``template``, or ``None`` (none, or it failed)."""
        spares = self._spares.get(template)
        if not spares:
            return None
        pending = spares.popleft()
        if pending.exception() is not None:
            return None
        return pending.result()

    def _clone_ahead(self, template: str) -> None:
        """Keep spares for ``template``: one after its first use, up to
        :data:`SPARE_DATABASES` as tests keep using it. Other templates keep one each, so
        apps that only a module or two use leave few unused clones behind."""
        self._uses[template] = self._uses.get(template, 0) + 1
        spares = self._spares.setdefault(template, deque())
        while len(spares) < min(SPARE_DATABASES, self._uses[template]):
            spares.append(
                self._cloning.submit(self._clone, template, f"bt_{uuid.uuid4().hex[:10]}")
            )
        for other, queue in self._spares.items():
            while other != template and len(queue) > 1:
                self._dropping.submit(self._drop_clone, queue.pop())

    def _drop_clone(self, pending: Future[str]) -> None:
        if pending.exception() is None:
            self._execute(f'DROP DATABASE IF EXISTS "{pending.result()}" WITH (FORCE)')

    def _clone(self, template: str, database: str) -> str:
        self._execute(f'CREATE DATABASE "{database}" TEMPLATE "{template}"')
        return database

    def _template(self, app: App) -> str:
        key = _fingerprint(app)
        if key in self._templates:
            return self._templates[key]
        if self.backend == "sqlite":
            path = self.workdir / f"template_{key}.db"
            migrate(app, f"sqlite:///{path}")
            with sqlite3.connect(path) as connection:  # fold the WAL in so one file is the whole DB
                connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._templates[key] = str(path)
        else:
            assert self.admin_url is not None
            name = f"bt_tpl_{key}_{os.getpid()}"
            self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            self._execute(f'CREATE DATABASE "{name}"')
            migrate(
                app,
                make_url(self.admin_url).set(database=name).render_as_string(hide_password=False),
            )
            self._templates[key] = name
        return self._templates[key]

    def _execute(self, sql: str) -> None:
        import psycopg

        assert self.admin_url is not None
        with psycopg.connect(_libpq(self.admin_url), autocommit=True) as connection:
            connection.execute(sql.encode())
