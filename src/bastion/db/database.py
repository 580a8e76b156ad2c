"""The Database facade: engines, sessions and transactions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, exc, text
from sqlalchemy.orm import Session, sessionmaker

from bastion.db.engine import create_engines, normalize_url
from bastion.db.reads import track_reads
from bastion.db.replicas import ReplicaSet
from bastion.db.writes import WRITES, track_writes, written_tables
from bastion.errors import ReadOnlyViolation
from bastion.settings.sections import DatabaseSection

_QUERY_WROTE = "a query tried to write: queries run in a read-only transaction; use a mutation"


class ReadOnlySession(Session):
    """Session of a query: flushing pending ORM changes is refused before any SQL is sent."""


@event.listens_for(ReadOnlySession, "before_flush")
def _refuse_flush(session: Session, _context: Any, _instances: Any) -> None:
    if session.new or session.dirty or session.deleted:
        raise ReadOnlyViolation(detail=_QUERY_WROTE)


class Database:
    """Two engines over one database (see :mod:`bastion.db.engine`), its read replicas
    (see :mod:`bastion.db.replicas`) and their sessions.

    Args:
        settings: The ``[database]`` section.
    """

    def __init__(self, settings: DatabaseSection) -> None:
        self.settings = settings
        self.url = normalize_url(settings.url)
        self.backend = self.url.get_backend_name()
        self.write_engine, self.read_engine = create_engines(settings)
        #: Copied into every write session's ``info`` (see :meth:`share_with_sessions`).
        self._session_info: dict[str, Any] = {}
        self._write_sessions = sessionmaker(
            self.write_engine, expire_on_commit=False, info=self._session_info
        )
        self._read_sessions = sessionmaker(
            self.read_engine, class_=ReadOnlySession, expire_on_commit=False
        )
        self.replicas = ReplicaSet(settings)
        # Bound per transaction to a connection of the replica whose turn it is.
        self._replica_sessions = sessionmaker(class_=ReadOnlySession, expire_on_commit=False)
        self._commit_hooks: list[Callable[[Session], None]] = []
        self._write_listeners: list[Callable[[frozenset[str]], object]] = []
        track_writes(self._write_sessions)
        track_reads(self._read_sessions)
        track_reads(self._replica_sessions)
        event.listen(self._write_sessions, "after_commit", self._after_commit)

    def share_with_sessions(self, key: str, value: object) -> None:
        """Make ``value`` reachable as ``session.info[key]`` in every write session made
        from now on: for services that code holding only a session must reach (an
        ``on_login`` hook sending a realtime event, say)."""
        self._session_info[key] = value

    def on_commit(self, hook: Callable[[Session], None]) -> None:
        """Call ``hook(session)`` after each committed write transaction (never after a
        rollback): wake-ups for enqueued jobs, later cache invalidation (#5)."""
        self._commit_hooks.append(hook)

    def on_flush(self, hook: Callable[[Session], None]) -> None:
        """Call ``hook(session)`` after each ORM flush of a write session, inside its
        transaction (search upkeep writes index entries there, so they commit or roll
        back with the rows)."""
        event.listen(self._write_sessions, "after_flush", lambda session, _context: hook(session))

    def on_write(self, listener: Callable[[frozenset[str]], object]) -> Callable[[], None]:
        """Call ``listener(tables)`` after each commit that changed ``tables`` (see
        :mod:`bastion.db.writes`); returns a function that removes the listener."""
        self._write_listeners.append(listener)
        return lambda: self._write_listeners.remove(listener)

    def _after_commit(self, session: Session) -> None:
        for hook in self._commit_hooks:
            hook(session)
        tables = written_tables(session)
        session.info.pop(WRITES, None)
        if tables:
            for listener in list(self._write_listeners):
                listener(tables)

    @property
    def is_sqlite(self) -> bool:
        return self.backend == "sqlite"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A read-write transaction: committed when the block ends, rolled back on error."""
        with self._write_sessions() as session, session.begin():
            yield session

    @contextmanager
    def read_transaction(self, *, replica: bool = False) -> Iterator[Session]:
        """A read-only transaction with a consistent snapshot; writes raise ReadOnlyViolation.

        Args:
            replica: Read from a read replica when one is configured and answers, else
                from the primary. A replica may lag behind the primary's last commits.
        """
        chosen = self.replicas.connect() if replica else None
        if chosen is None:
            with self._read_sessions() as session:
                yield from _read_only(session)
            return
        target, connection = chosen
        try:
            with self._replica_sessions(bind=connection) as session:
                yield from _read_only(session)
        except exc.DBAPIError as error:
            if is_unavailable_error(error):
                self.replicas.mark_down(target, error)
            raise
        finally:
            connection.close()

    def ping(self) -> None:
        """Run ``SELECT 1``; raises when the database cannot be reached."""
        with self.read_engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.write_engine.dispose()
        self.read_engine.dispose()
        self.replicas.dispose()


def _read_only(session: Session) -> Iterator[Session]:
    try:
        with session.begin():
            yield session
    except exc.DBAPIError as error:
        if is_read_only_error(error):
            raise ReadOnlyViolation(detail=_QUERY_WROTE) from error
        raise


def is_read_only_error(error: exc.DBAPIError) -> bool:
    """Whether a driver error says a read-only connection was asked to write."""
    original = error.orig
    if getattr(original, "sqlstate", None) == "25006":  # PostgreSQL read_only_sql_transaction
        return True
    return "readonly database" in str(original) or "read-only" in str(original)


def is_unavailable_error(error: exc.DBAPIError) -> bool:
    """Whether a driver error means the database cannot be reached (not a bad statement)."""
    if error.connection_invalidated:
        return True
    if isinstance(error, exc.OperationalError):
        message = str(error.orig).lower()
        return any(
            marker in message
            for marker in (
                "could not connect",
                "connection refused",
                "database is locked",
                "unable to open database",
                "server closed",
                "timeout expired",
                "connection failed",
                "terminating connection",
            )
        )
    return False
