"""``SearchIndex``: a declarative full-text index over one table's text fields.

Upkeep is key-based: syncing a key re-reads its row and makes the entry match (a
key whose row is gone loses its entry), so "these rows of this table changed" is
all the index needs to know. ORM writes of a declared index's table are synced
automatically in their flush (:mod:`bastion.search.upkeep`); Core statements and raw
SQL call :meth:`SearchIndex.upsert`. There are no SQL triggers: they would differ
per database and hide the cost of indexing inside every write.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Column, Connection, Table, select
from sqlalchemy.orm import Session

from bastion.search.base import Hit, Scope, SearchBackend, Weight, query_words
from bastion.search.postgres import PostgresSearch
from bastion.search.similarity import fuzzy_rank
from bastion.search.sqlite import SQLiteSearch

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,50}$")
# What follows the index name in its tables' names: PostgreSQL's entries and
# vocabulary, SQLite's two FTS5 tables and the shadow tables FTS5 keeps for each.
_OWN_TABLE = re.compile(r"_search|_words|_(fts|tri)(_(data|idx|content|docsize|config))?")

_SYNC_BATCH = 1000

#: Called during :meth:`SearchIndex.rebuild` with ``(done, total)`` rows.
Progress = Callable[[int, int], None]


class SearchIndex:
    """Full-text search over ``fields`` of ``table``, the same API on SQLite and PostgreSQL.

    Args:
        name: Index name; its tables are ``<name>_fts``/``<name>_tri`` (SQLite) or
            ``<name>_search``/``<name>_words`` (PostgreSQL).
        table: The source table (``Model.__table__`` for ORM models).
        key: The column identifying a row; an integer on SQLite (it is the FTS rowid).
        fields: Text column name -> weight, ``"A"`` (highest) to ``"D"``.
        filters: Columns of ``table`` that :meth:`search` accepts as equality filters.
        language: PostgreSQL text search configuration; ``"english"`` also selects
            SQLite's Porter stemmer, anything else plain ``unicode61``.
        min_similarity: How close (0-1, trigram similarity per word, averaged) a typo
            must be to a field's words to count as a match.
        fuzzy_candidates: How many typo candidates are scored per search.

    Example::

        products = SearchIndex(
            "product_search", Product.__table__, key=Product.__table__.c.id,
            fields={"name": "A", "description": "B"},
            filters=[Product.__table__.c.category],
        )
        hits = products.search(session, "blak coffee", limit=10, filters={"category": "food"})
    """

    def __init__(
        self,
        name: str,
        table: Table,
        *,
        key: Column[Any] | str,
        fields: Mapping[str, Weight],
        filters: Iterable[Column[Any] | str] = (),
        language: str = "english",
        min_similarity: float = 0.3,
        fuzzy_candidates: int = 200,
    ) -> None:
        if not _NAME.match(name):
            raise ValueError(f"search index name {name!r}: use lower-case letters, digits, _")
        if not fields:
            raise ValueError(f"search index {name!r} needs at least one field")
        for field, weight in fields.items():
            if field not in table.c:
                raise ValueError(f"search index {name!r}: {table.name} has no column {field!r}")
            if weight not in ("A", "B", "C", "D"):
                raise ValueError(f"search index {name!r}: weight of {field!r} must be A-D")
        self.name = name
        self.table = table
        self.key = table.c[key if isinstance(key, str) else key.name]
        self.filters = {
            column: table.c[column if isinstance(column, str) else column.name]
            for column in (f if isinstance(f, str) else f.name for f in filters)
        }
        self.min_similarity = min_similarity
        self.fuzzy_candidates = fuzzy_candidates
        self.scope = Scope(
            name=name, table=table.name, key=self.key.name, fields=dict(fields), language=language
        )

    def __repr__(self) -> str:
        return f"SearchIndex({self.name!r}, {self.table.name!r}, fields={dict(self.scope.fields)})"

    # -- DDL -------------------------------------------------------------------

    def create(self, connection: Connection) -> None:
        """Create the index's tables, empty; e.g. ``index.create(op.get_bind())`` in a
        migration, followed by ``rebuild`` or ``bastion search reindex`` to fill them."""
        self._backend(connection.dialect.name).create(connection, self.scope)

    def drop(self, connection: Connection) -> None:
        """Drop the index's tables (the source table is untouched)."""
        self._backend(connection.dialect.name).drop(connection, self.scope)

    def owns_table(self, table: str) -> bool:
        """Whether ``table`` is one of the index's own tables, on either database (its
        FTS5 shadow tables included): for migration autogenerate to leave alone."""
        suffix = table.removeprefix(self.name)
        return suffix != table and _OWN_TABLE.fullmatch(suffix) is not None

    # -- upkeep ----------------------------------------------------------------

    def upsert(self, session: Session, *keys: Any) -> None:
        """Bring the entries of ``keys`` in step with their rows, in ``session``'s
        transaction; a key whose row no longer exists is removed from the index.

        ORM writes of a declared index's table need no call (see
        :mod:`bastion.search.upkeep`); Core ``update()``/``delete()`` and raw SQL do."""
        if keys:
            session.flush()
            self._sync(session, keys)

    def delete(self, session: Session, *keys: Any) -> None:
        """Remove the entries of ``keys``, whether or not their rows still exist."""
        if keys:
            self._backend_of(session).remove(session, self.scope, keys)

    def rebuild(
        self, session: Session, *, batch: int = 500, progress: Progress | None = None
    ) -> int:
        """Re-index every row of the table; returns the number of rows indexed."""
        session.flush()
        backend = self._backend_of(session)
        keys = list(session.scalars(select(self.key).order_by(self.key)))
        backend.clear(session, self.scope)
        if progress is not None:
            progress(0, len(keys))
        for start in range(0, len(keys), batch):
            backend.sync(session, self.scope, keys[start : start + batch])
            if progress is not None:
                progress(min(start + batch, len(keys)), len(keys))
        return len(keys)

    # -- query -----------------------------------------------------------------

    def search(
        self,
        session: Session,
        text: str,
        *,
        limit: int = 20,
        offset: int = 0,
        filters: Mapping[str, Any] | None = None,
        fuzzy: bool = True,
    ) -> list[Hit]:
        """Rows matching ``text``, best first.

        Every word must match (the last one as a prefix, for search-as-you-type);
        when that leaves the page short and ``fuzzy`` is on, close typo matches
        follow. ``text`` is never interpreted as query syntax: quotes, ``*``, ``-``,
        ``AND`` or ``NEAR(`` are just characters. An input without words returns
        no hits.

        Raises:
            ValueError: for a filter not declared on the index.
        """
        words = query_words(text)
        if not words or limit <= 0:
            return []
        backend = self._backend_of(session)
        clause, params = self._filter_sql(filters or {})
        wanted = offset + limit
        hits = [
            Hit(key=key, rank=1.0 + score)
            for key, score in backend.word_hits(session, self.scope, words, clause, params, wanted)
        ]
        if fuzzy and len(hits) < wanted:
            seen = {hit.key for hit in hits}
            scored = []
            for key, texts in backend.fuzzy_candidates(
                session, self.scope, words, clause, params, self.fuzzy_candidates
            ):
                if key in seen:
                    continue
                rank = fuzzy_rank(words, texts, self.scope.fields, self.min_similarity)
                if rank > 0:
                    scored.append(Hit(key=key, rank=rank, fuzzy=True))
            scored.sort(key=lambda hit: (-hit.rank, hit.key))
            hits.extend(scored)
        return hits[offset:wanted]

    # -- internals -------------------------------------------------------------

    def _filter_sql(self, filters: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        clause, params = "", {}
        for i, (name, value) in enumerate(sorted(filters.items())):
            if name not in self.filters:
                raise ValueError(
                    f"search index {self.name!r} has no filter {name!r} "
                    f"(declared: {', '.join(sorted(self.filters)) or 'none'})"
                )
            column = '"' + self.filters[name].name.replace('"', '""') + '"'
            if value is None:
                clause += f" AND t.{column} IS NULL"
            else:
                clause += f" AND t.{column} = :filter_{i}"
                params[f"filter_{i}"] = value
        return clause, params

    def _sync(self, session: Session, keys: Sequence[Any]) -> None:
        backend = self._backend_of(session)
        # Batches keep the key list under SQLite's limit of bound parameters (32,766).
        for start in range(0, len(keys), _SYNC_BATCH):
            backend.sync(session, self.scope, keys[start : start + _SYNC_BATCH])

    def _backend_of(self, session: Session) -> SearchBackend:
        return self._backend(session.get_bind().dialect.name)

    def _backend(self, dialect: str) -> SearchBackend:
        if dialect == "sqlite":
            return SQLiteSearch()
        if dialect == "postgresql":
            key_type = "bigint" if self.key.type.python_type is int else "text"
            return PostgresSearch(key_type)
        raise ValueError(f"search indexes support sqlite and postgresql, not {dialect!r}")
