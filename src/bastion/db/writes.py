"""Write sets: which tables a transaction changed, known after it commits.

Cache invalidation, realtime re-runs and search upkeep (#5) all need "what did this
commit touch". Every write session records the tables of the ORM objects it flushes
and of the INSERT/UPDATE/DELETE statements it executes; :class:`Database` hands the set
to its listeners after a commit only, so a rolled-back mutation invalidates nothing.

Raw SQL (``text("UPDATE ...")``) cannot be read this way: call :func:`mark_written`.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

from sqlalchemy import event
from sqlalchemy import inspect as inspect_object
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

#: ``session.info`` key of the set of written table names.
WRITES = "bastion.writes"


def mark_written(session: Session, *tables: str) -> None:
    """Record tables a statement the tracker cannot read (raw SQL) changed."""
    session.info.setdefault(WRITES, set()).update(tables)


def written_tables(session: Session) -> frozenset[str]:
    """The tables ``session``'s transaction changed so far."""
    return frozenset(session.info.get(WRITES, ()))


def track_writes(sessions: sessionmaker[Session]) -> None:
    """Record the write set of every session ``sessions`` makes."""

    @event.listens_for(sessions, "do_orm_execute")
    def _statement(state: ORMExecuteState) -> None:
        if state.is_insert or state.is_update or state.is_delete:
            table = getattr(state.statement, "table", None)
            name = getattr(table, "name", None)
            if name:
                mark_written(state.session, name)

    @event.listens_for(sessions, "after_flush")
    def _flush(session: Session, _context: Any) -> None:
        names = {
            table.name
            for instance in chain(session.new, session.dirty, session.deleted)
            for table in inspect_object(instance).mapper.tables
        }
        if names:
            mark_written(session, *names)
