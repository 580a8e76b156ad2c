"""Read sets: which tables a query read, so a commit writing one of them invalidates its
cached result (see :mod:`bastion.cache`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.util import find_tables

#: ``session.info`` key of the set of read table names.
READS = "bastion.reads"


def track_reads(sessions: sessionmaker[Any]) -> None:
    """Record the tables SELECTs read (lazy loads too), in sessions that ask for it with
    :func:`record_reads`; others pay one dict lookup per statement."""

    @event.listens_for(sessions, "do_orm_execute")
    def _statement(state: ORMExecuteState) -> None:
        reads = state.session.info.get(READS)
        if reads is None:
            return
        statement = state.statement
        if not state.is_select or not isinstance(statement, ClauseElement):
            return
        tables = find_tables(statement, include_joins=True, include_aliases=True)
        reads.update(name for table in tables if (name := getattr(table, "name", None)))


def record_reads(session: Session) -> set[str]:
    """Start recording ``session``'s read tables; returns the set that fills up."""
    reads: set[str] = session.info.setdefault(READS, set())
    return reads
