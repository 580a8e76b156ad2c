"""SQLite backend: two FTS5 tables per index, keyed by ``rowid`` = the row's key.

``<name>_fts`` uses the ``porter unicode61`` tokenizer (English stemming, accents
folded) and is ranked with ``bm25`` column weights. ``<name>_tri`` uses the
``trigram`` tokenizer (SQLite >= 3.34) and only finds typo candidates.

Both are ordinary FTS5 tables holding their own copy of the text, not external
content tables: removing an external-content entry needs the row's *old* values,
which are gone by the time a mutation says "row 7 changed". The cost is the text
stored twice; the gain is that :meth:`sync` needs nothing but the key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import BindParameter, Connection, bindparam, text
from sqlalchemy.orm import Session

from bastion.search.base import WEIGHTS, Scope


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _phrase(word: str) -> str:
    # A double-quoted FTS5 string is taken literally: no operators, columns or NEAR.
    return '"' + word.replace('"', '""') + '"'


class SQLiteSearch:
    """FTS5 implementation of :class:`~bastion.search.base.SearchBackend`."""

    def create(self, connection: Connection, scope: Scope) -> None:
        columns = ", ".join(_quote(field) for field in scope.fields)
        stemmer = "porter unicode61" if scope.language == "english" else "unicode61"
        connection.execute(
            text(
                f"CREATE VIRTUAL TABLE IF NOT EXISTS {_quote(scope.name + '_fts')} USING fts5("
                f"{columns}, tokenize='{stemmer} remove_diacritics 2')"
            )
        )
        connection.execute(
            text(
                f"CREATE VIRTUAL TABLE IF NOT EXISTS {_quote(scope.name + '_tri')} USING fts5("
                f"{columns}, tokenize='trigram')"
            )
        )

    def drop(self, connection: Connection, scope: Scope) -> None:
        for suffix in ("_fts", "_tri"):
            connection.execute(text(f"DROP TABLE IF EXISTS {_quote(scope.name + suffix)}"))

    def sync(self, session: Session, scope: Scope, keys: Sequence[Any]) -> None:
        columns = ", ".join(_quote(field) for field in scope.fields)
        keys_param: BindParameter[Any] = bindparam("keys", expanding=True)
        self.remove(session, scope, keys)
        for suffix in ("_fts", "_tri"):
            table = _quote(scope.name + suffix)
            session.execute(
                text(
                    f"INSERT INTO {table} (rowid, {columns}) "
                    f"SELECT {_quote(scope.key)}, {columns} FROM {_quote(scope.table)} "
                    f"WHERE {_quote(scope.key)} IN :keys"
                ).bindparams(keys_param),
                {"keys": list(keys)},
            )

    def remove(self, session: Session, scope: Scope, keys: Sequence[Any]) -> None:
        keys_param: BindParameter[Any] = bindparam("keys", expanding=True)
        for suffix in ("_fts", "_tri"):
            session.execute(
                text(f"DELETE FROM {_quote(scope.name + suffix)} WHERE rowid IN :keys").bindparams(
                    keys_param
                ),
                {"keys": list(keys)},
            )

    def clear(self, session: Session, scope: Scope) -> None:
        for suffix in ("_fts", "_tri"):
            session.execute(text(f"DELETE FROM {_quote(scope.name + suffix)}"))

    def word_hits(
        self,
        session: Session,
        scope: Scope,
        words: list[str],
        filters: str,
        params: dict[str, Any],
        limit: int,
    ) -> list[tuple[Any, float]]:
        fts = _quote(scope.name + "_fts")
        match = " ".join(_phrase(word) for word in words) + "*"
        weights = ", ".join(str(WEIGHTS[weight]) for weight in scope.fields.values())
        rows = session.execute(
            text(
                f"SELECT {fts}.rowid AS key, -bm25({fts}, {weights}) AS score "
                f"FROM {fts} JOIN {_quote(scope.table)} AS t "
                f"ON t.{_quote(scope.key)} = {fts}.rowid "
                f"WHERE {fts} MATCH :match{filters} ORDER BY score DESC, key LIMIT :limit"
            ),
            {**params, "match": match, "limit": limit},
        )
        return [(row.key, float(row.score)) for row in rows]

    def fuzzy_candidates(
        self,
        session: Session,
        scope: Scope,
        words: list[str],
        filters: str,
        params: dict[str, Any],
        limit: int,
    ) -> list[tuple[Any, dict[str, str | None]]]:
        grams = sorted({word[i : i + 3] for word in words for i in range(len(word) - 2)})
        if not grams:
            return []
        tri = _quote(scope.name + "_tri")
        columns = ", ".join(f"t.{_quote(field)}" for field in scope.fields)
        rows = session.execute(
            text(
                f"SELECT {tri}.rowid AS key, {columns} "
                f"FROM {tri} JOIN {_quote(scope.table)} AS t "
                f"ON t.{_quote(scope.key)} = {tri}.rowid "
                f"WHERE {tri} MATCH :match{filters} ORDER BY bm25({tri}) LIMIT :limit"
            ),
            {**params, "match": " OR ".join(_phrase(gram) for gram in grams), "limit": limit},
        )
        return [(row[0], dict(zip(scope.fields, row[1:], strict=True))) for row in rows]
