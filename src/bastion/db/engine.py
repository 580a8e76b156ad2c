"""Create SQLAlchemy engines tuned for SQLite (WAL) and PostgreSQL (psycopg 3).

Each database gets two engines: a *write* engine for mutations and a *read* engine
for queries. The read engine's connections are read-only at the database level
(SQLite ``PRAGMA query_only``, PostgreSQL ``default_transaction_read_only``), so a
query that tries to write fails without any per-request cost. Read replicas
(``replica_urls``, see :mod:`bastion.db.replicas`) get read engines of their own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url

from bastion.settings.sections import DatabaseSection


def normalize_url(url: str) -> URL:
    """Parse a database URL; plain ``postgres(ql)://`` URLs use the psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def create_engines(settings: DatabaseSection) -> tuple[Engine, Engine]:
    """Return ``(write_engine, read_engine)`` for the configured database."""
    url = normalize_url(settings.url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url, settings, read_only=False), _sqlite_engine(
            url, settings, read_only=True
        )
    if backend == "postgresql":
        return _postgres_engine(url, settings, read_only=False), _postgres_engine(
            url, settings, read_only=True
        )
    raise ValueError(f"unsupported database {backend!r}: use sqlite or postgresql")


def create_replica_engine(url: str, settings: DatabaseSection) -> Engine:
    """A read-only engine on one PostgreSQL read replica, pooled like the primary's."""
    return _postgres_engine(normalize_url(url), settings, read_only=True)


def _sqlite_engine(url: URL, settings: DatabaseSection, *, read_only: bool) -> Engine:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        raise ValueError(
            "in-memory SQLite is not supported (each connection would see its own database); "
            "use a file"
        )
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        echo=settings.echo,
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.pool_timeout_s,
        # The driver's own transaction handling is switched off (isolation_level=None)
        # so that the "begin" hook below decides how each transaction starts.
        connect_args={
            "check_same_thread": False,
            "isolation_level": None,
            "timeout": settings.busy_timeout_ms / 1000,
        },
    )
    pragmas = [
        "PRAGMA journal_mode=WAL",
        f"PRAGMA busy_timeout={settings.busy_timeout_ms}",
        "PRAGMA foreign_keys=ON",
        f"PRAGMA synchronous={settings.sqlite_synchronous}",
    ]
    if read_only:
        pragmas.append("PRAGMA query_only=ON")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        for pragma in pragmas:
            cursor.execute(pragma)
        cursor.close()

    # Writers take the write lock up front: a deferred transaction that reads and
    # then writes can fail with SQLITE_BUSY without waiting, when another writer
    # got there first. Readers use a deferred BEGIN for a consistent snapshot.
    begin = "BEGIN" if read_only else "BEGIN IMMEDIATE"

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)

    return engine


def _postgres_engine(url: URL, settings: DatabaseSection, *, read_only: bool) -> Engine:
    options = [f"-c statement_timeout={settings.statement_timeout_ms}"]
    if read_only:
        options.append("-c default_transaction_read_only=on")
    return create_engine(
        url,
        echo=settings.echo,
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.pool_timeout_s,
        pool_pre_ping=True,
        connect_args={"options": " ".join(options), "connect_timeout": 5},
    )
