"""Engine settings on each backend: WAL, foreign keys, busy timeout; read-only read engine."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from bastion import App, Runtime
from bastion.db import Database
from bastion.settings.sections import DatabaseSection
from tests.apps import app


@pytest.fixture
def bastion_app() -> App:
    return app


async def test_connections_are_configured_for_the_backend(runtime: Runtime) -> None:
    database = runtime.database
    with database.transaction() as session:
        if database.is_sqlite:
            assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert session.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert session.execute(text("PRAGMA busy_timeout")).scalar() == 5000
            assert session.execute(text("PRAGMA query_only")).scalar() == 0
        else:
            assert session.execute(text("SHOW statement_timeout")).scalar() == "30s"
            assert session.execute(text("SHOW transaction_read_only")).scalar() == "off"
    with database.read_transaction() as session:
        if database.is_sqlite:
            assert session.execute(text("PRAGMA query_only")).scalar() == 1
        else:
            assert session.execute(text("SHOW transaction_read_only")).scalar() == "on"


def test_urls_are_normalized_and_memory_sqlite_is_refused() -> None:
    with pytest.raises(ValueError, match="in-memory SQLite is not supported"):
        Database(DatabaseSection(url="sqlite://"))
    with pytest.raises(ValueError, match="unsupported database 'mysql'"):
        Database(DatabaseSection(url="mysql://localhost/db"))
    database = Database(DatabaseSection(url="postgres://user@localhost/db"))
    assert database.url.drivername == "postgresql+psycopg"
    database.dispose()
