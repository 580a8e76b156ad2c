"""Alembic environment used by ``bastion migrate``: platform and app branches together.

Bastion passes the engine, the metadata and the filter for autogenerate through
``config.attributes``; nothing here reads ``alembic.ini``.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import text

from bastion.db.types import UTCDateTime

config = context.config
engine = config.attributes["engine"]
target_metadata = config.attributes["metadata"]
include_object = config.attributes.get("include_object")

# Many processes may start with auto_migrate at once; on PostgreSQL an advisory
# lock makes them take turns (SQLite's BEGIN IMMEDIATE already serializes them).
_LOCK_ID = 7_311_982_044


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    # Bastion's own column types render as short names with their import, so a
    # generated revision runs as written.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        autogen_context.imports.add("from bastion.db.types import UTCDateTime")
        return "UTCDateTime()"
    return False


def run_migrations_online() -> None:
    with engine.connect() as connection:
        is_postgres = connection.dialect.name == "postgresql"
        if is_postgres:
            connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _LOCK_ID})
            connection.commit()
        try:
            options: dict[str, Any] = {
                "connection": connection,
                "target_metadata": target_metadata,
                "render_as_batch": connection.dialect.name == "sqlite",
                "compare_type": True,
                "render_item": render_item,
            }
            if include_object is not None:
                options["include_object"] = include_object
            context.configure(**options)
            with context.begin_transaction():
                context.run_migrations()
        finally:
            if is_postgres:
                connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _LOCK_ID})
                connection.commit()


run_migrations_online()
