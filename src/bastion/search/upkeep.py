"""Automatic upkeep: ORM writes to an indexed table update the index in the same flush.

:func:`keep_in_step` (called by the runtime for the app's indexes) watches the
database's write sessions: after each flush it collects the keys of the new, changed
and deleted objects of indexed tables and syncs those entries with Core statements in
the flush's own transaction: a commit publishes rows and entries together, a rollback
undoes both.

Only objects whose indexed fields (or key) changed are synced, so the checkout's
stock updates cost nothing. Core ``update()``/``delete()`` statements and raw SQL
bypass the flush: their rows are not known here, and the caller syncs them with
``index.upsert(session, *keys)`` (or ``bastion search reindex`` for bulk changes).
Sessions made outside the runtime's database (a data migration's) are not watched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column
from sqlalchemy import inspect as inspect_object
from sqlalchemy.orm import InstanceState, Session
from sqlalchemy.orm.base import NO_VALUE
from sqlalchemy.sql.expression import TableClause

if TYPE_CHECKING:
    from bastion.db.database import Database
    from bastion.search.index import SearchIndex


def keep_in_step(database: Database, indexes: Iterable[SearchIndex]) -> None:
    """Sync ``indexes`` on every ORM flush of ``database`` that inserts, changes or
    deletes rows of their tables."""
    watched: dict[TableClause, list[SearchIndex]] = {}
    for index in indexes:
        watched.setdefault(index.table, []).append(index)
    if watched:
        database.on_flush(partial(_after_flush, watched))


def _after_flush(watched: Mapping[TableClause, list[SearchIndex]], session: Session) -> None:
    changed: dict[SearchIndex, set[Any]] = {}
    for kind, instances in (
        ("new", session.new),
        ("dirty", session.dirty),
        ("deleted", session.deleted),
    ):
        for instance in instances:
            state: InstanceState[Any] = inspect_object(instance)
            for table in state.mapper.tables:
                for index in watched.get(table, ()):
                    changed.setdefault(index, set()).update(_keys(index, state, kind))
    for index, keys in changed.items():
        if keys:
            # Core statements only: a flush cannot be started from inside a flush.
            index._sync(session, sorted(keys, key=str))


def _keys(index: SearchIndex, state: InstanceState[Any], kind: str) -> list[Any]:
    """The index keys an object's flush touched: none when no indexed field changed."""
    attrs = state.attrs
    key = attrs[_attribute(state, index.key)]
    if kind == "deleted":
        # The key may be expired by now; when it is the primary key, the identity
        # still names the row.
        value = key.loaded_value
        identity = state.identity
        if value is NO_VALUE and index.key.primary_key and identity and len(identity) == 1:
            value = identity[0]
        return [] if value is NO_VALUE else [value]
    if kind == "dirty":
        fields = [_attribute(state, index.table.c[field]) for field in index.scope.fields]
        if not key.history.has_changes() and not any(
            attrs[field].history.has_changes() for field in fields
        ):
            return []
    # A changed key moves the entry: the old key loses it, the new one gets it.
    return [value for value in (key.value, *key.history.deleted) if value is not None]


def _attribute(state: InstanceState[Any], column: Column[Any]) -> str:
    return state.mapper.get_property_by_column(column).key
