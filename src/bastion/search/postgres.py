"""PostgreSQL backend: one ``<name>_search`` table with a weighted ``tsvector``.

Each entry holds the row's key, ``document`` (``setweight(to_tsvector(field), 'A')
|| ...``, GIN-indexed, ranked with ``ts_rank_cd``) and a copy of each field's text
with a ``pg_trgm`` GIN index, which finds typo candidates through the ``<%``
(word similarity) operator.

A side table rather than a generated column on the user's table: the index can be
created, dropped and rebuilt without touching (or locking) the source table, and
the layout mirrors the SQLite backend, so upkeep is the same call on both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import BindParameter, Connection, bindparam, text
from sqlalchemy.orm import Session

from bastion.search.base import WEIGHTS, Scope

# ts_rank_cd takes the weights of D, C, B and A, in that order.
_RANK_WEIGHTS = "{" + ",".join(str(WEIGHTS[w]) for w in "DCBA") + "}"
# Candidate threshold for ``<%``: loose on purpose, the final cut is made in Python
# (bastion.search.similarity) so that both backends apply the same one.
_CANDIDATE_THRESHOLD = "0.3"


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _lexeme(word: str) -> str:
    # Words hold only letters and digits (bastion.search.base.query_words); quoting
    # them still keeps tsquery operators (& | ! <-> :*) out of the user's reach.
    return "'" + word.replace("'", "''").replace("\\", "\\\\") + "'"


class PostgresSearch:
    """tsvector + pg_trgm implementation of :class:`~bastion.search.base.SearchBackend`."""

    def __init__(self, key_type: str) -> None:
        self.key_type = key_type

    def create(self, connection: Connection, scope: Scope) -> None:
        table = _quote(scope.name + "_search")
        fields = "".join(f", {_quote(field)} text" for field in scope.fields)
        connection.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
        connection.execute(
            text(
                f"CREATE TABLE IF NOT EXISTS {table} (key {self.key_type} PRIMARY KEY, "
                f"document tsvector NOT NULL{fields})"
            )
        )
        connection.execute(
            text(
                f"CREATE INDEX IF NOT EXISTS {_quote(scope.name + '_search_document')} "
                f"ON {table} USING gin (document)"
            )
        )
        for field in scope.fields:
            connection.execute(
                text(
                    f"CREATE INDEX IF NOT EXISTS {_quote(f'{scope.name}_search_{field}_trgm')} "
                    f"ON {table} USING gin ({_quote(field)} gin_trgm_ops)"
                )
            )

    def drop(self, connection: Connection, scope: Scope) -> None:
        connection.execute(text(f"DROP TABLE IF EXISTS {_quote(scope.name + '_search')}"))

    def sync(self, session: Session, scope: Scope, keys: Sequence[Any]) -> None:
        table = _quote(scope.name + "_search")
        keys_param: BindParameter[Any] = bindparam("keys", expanding=True)
        document = " || ".join(
            f"setweight(to_tsvector(CAST(:language AS regconfig), "
            f"coalesce(t.{_quote(field)}, '')), '{weight}')"
            for field, weight in scope.fields.items()
        )
        columns = ", ".join(_quote(field) for field in scope.fields)
        source = ", ".join(f"t.{_quote(field)}" for field in scope.fields)
        self.remove(session, scope, keys)
        session.execute(
            text(
                f"INSERT INTO {table} (key, document, {columns}) "
                f"SELECT t.{_quote(scope.key)}, {document}, {source} "
                f"FROM {_quote(scope.table)} AS t WHERE t.{_quote(scope.key)} IN :keys"
            ).bindparams(keys_param),
            {"keys": list(keys), "language": scope.language},
        )

    def remove(self, session: Session, scope: Scope, keys: Sequence[Any]) -> None:
        session.execute(
            text(f"DELETE FROM {_quote(scope.name + '_search')} WHERE key IN :keys").bindparams(
                bindparam("keys", expanding=True)
            ),
            {"keys": list(keys)},
        )

    def clear(self, session: Session, scope: Scope) -> None:
        session.execute(text(f"DELETE FROM {_quote(scope.name + '_search')}"))

    def word_hits(
        self,
        session: Session,
        scope: Scope,
        words: list[str],
        filters: str,
        params: dict[str, Any],
        limit: int,
    ) -> list[tuple[Any, float]]:
        query = " & ".join(_lexeme(word) for word in words) + ":*"
        rows = session.execute(
            text(
                f"SELECT s.key, ts_rank_cd(CAST(:weights AS float4[]), s.document, q) AS score "
                f"FROM {_quote(scope.name + '_search')} AS s "
                f"JOIN {_quote(scope.table)} AS t ON t.{_quote(scope.key)} = s.key, "
                f"to_tsquery(CAST(:language AS regconfig), :query) AS q "
                f"WHERE s.document @@ q{filters} ORDER BY score DESC, s.key LIMIT :limit"
            ),
            {
                **params,
                "weights": _RANK_WEIGHTS,
                "language": scope.language,
                "query": query,
                "limit": limit,
            },
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
        session.execute(
            text("SELECT set_config('pg_trgm.word_similarity_threshold', :t, true)"),
            {"t": _CANDIDATE_THRESHOLD},
        )
        words_params = {f"w{i}": word for i, word in enumerate(words)}
        matches = " OR ".join(
            f":{name} <% s.{_quote(field)}" for name in words_params for field in scope.fields
        )
        closeness = ", ".join(
            f"word_similarity(:{name}, coalesce(s.{_quote(field)}, ''))"
            for name in words_params
            for field in scope.fields
        )
        columns = ", ".join(f"s.{_quote(field)}" for field in scope.fields)
        rows = session.execute(
            text(
                f"SELECT s.key, {columns} FROM {_quote(scope.name + '_search')} AS s "
                f"JOIN {_quote(scope.table)} AS t ON t.{_quote(scope.key)} = s.key "
                f"WHERE ({matches}){filters} ORDER BY greatest({closeness}) DESC, s.key "
                f"LIMIT :limit"
            ),
            {**params, **words_params, "limit": limit},
        )
        return [(row[0], dict(zip(scope.fields, row[1:], strict=True))) for row in rows]
