"""PostgreSQL backend: a ``<name>_search`` table with a weighted ``tsvector``, and a
``<name>_words`` vocabulary for typos.

Each entry holds the row's key, ``document`` (``setweight(to_tsvector(field), 'A')
|| ...``, GIN-indexed, ranked with ``ts_rank_cd``) and a copy of each field's text,
which the typo stage hands to :mod:`bastion.search.similarity` for scoring.

Typos are corrected on the *query words*, not searched for in the rows: the
vocabulary holds every distinct word of the indexed text (lower-cased runs of letters
and digits, as :func:`~bastion.search.base.query_words` splits a query) with a
``pg_trgm`` GIN index, so a word missing from it is looked up among a few thousand
words by trigram similarity (``%``), and the few closest ones go into an ordinary
``tsvector`` query. Matching typos against the rows instead (``<%`` on each field)
shares trigrams with thousands of rows at 100,000 products ("hedphones" with every
"phone") and scores them all: seconds per query. Words are only ever added to the
vocabulary (a deleted row's words stay until the next rebuild): a stale word costs
one wasted correction, while removing words would mean counting their uses.

Side tables rather than a generated column on the user's table: the index can be
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
# Threshold of ``%`` when correcting a query word: loose on purpose, the final cut is
# made in Python (bastion.search.similarity) so that both backends apply the same one.
_CORRECTION_THRESHOLD = "0.3"
# How many vocabulary words stand in for one misspelt query word.
_CORRECTIONS = 3
# What separates words in the indexed text: the complement of query_words' pattern. A
# bound parameter because ``[:alnum:]`` would read as one inside ``text()``.
_NOT_A_WORD = "[^[:alnum:]]+"
# Longer "words" (hashes, URLs run together) are never typed as queries, and a bound on
# the length keeps every word inside the primary key's B-tree entry limit.
_LONGEST_WORD = 64


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
        words = _quote(scope.name + "_words")
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
        connection.execute(text(f"CREATE TABLE IF NOT EXISTS {words} (word text PRIMARY KEY)"))
        connection.execute(
            text(
                f"CREATE INDEX IF NOT EXISTS {_quote(scope.name + '_words_trgm')} "
                f"ON {words} USING gin (word gin_trgm_ops)"
            )
        )
        # Indexes created before the vocabulary existed, which typos were matched with:
        # unused now, they would only slow every write down.
        for field in scope.fields:
            connection.execute(
                text(f"DROP INDEX IF EXISTS {_quote(f'{scope.name}_search_{field}_trgm')}")
            )

    def drop(self, connection: Connection, scope: Scope) -> None:
        for suffix in ("_search", "_words"):
            connection.execute(text(f"DROP TABLE IF EXISTS {_quote(scope.name + suffix)}"))

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
        # In word order: two transactions adding overlapping words then wait for each
        # other in the same order, never in a cycle (a deadlock).
        session.execute(
            text(
                f"INSERT INTO {_quote(scope.name + '_words')} (word) "
                f"SELECT DISTINCT w.word FROM {_quote(scope.table)} AS t, "
                f"regexp_split_to_table(lower(concat_ws(' ', {source})), :separator) AS w(word) "
                f"WHERE t.{_quote(scope.key)} IN :keys "
                f"AND length(w.word) BETWEEN 2 AND {_LONGEST_WORD} "
                f"ORDER BY w.word ON CONFLICT DO NOTHING"
            ).bindparams(keys_param),
            {"keys": list(keys), "separator": _NOT_A_WORD},
        )

    def remove(self, session: Session, scope: Scope, keys: Sequence[Any]) -> None:
        session.execute(
            text(f"DELETE FROM {_quote(scope.name + '_search')} WHERE key IN :keys").bindparams(
                bindparam("keys", expanding=True)
            ),
            {"keys": list(keys)},
        )

    def clear(self, session: Session, scope: Scope) -> None:
        for suffix in ("_search", "_words"):
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
        query = " & ".join(_lexeme(word) for word in words) + ":*"
        return self._ranked(session, scope, query, filters, params, limit)

    def fuzzy_candidates(
        self,
        session: Session,
        scope: Scope,
        words: list[str],
        filters: str,
        params: dict[str, Any],
        limit: int,
    ) -> list[tuple[Any, dict[str, str | None]]]:
        alternatives = sorted(self._corrections(session, scope, words))
        # The last word may still be half typed, as in the word stage.
        terms = [_lexeme(word) for word in alternatives] + [_lexeme(words[-1]) + ":*"]
        keys = [
            key
            for key, _score in self._ranked(
                session, scope, " | ".join(terms), filters, params, limit
            )
        ]
        if not keys:
            return []
        columns = ", ".join(_quote(field) for field in scope.fields)
        rows = session.execute(
            text(
                f"SELECT key, {columns} FROM {_quote(scope.name + '_search')} WHERE key IN :keys"
            ).bindparams(bindparam("keys", expanding=True)),
            {"keys": keys},
        )
        texts = {row[0]: dict(zip(scope.fields, row[1:], strict=True)) for row in rows}
        return [(key, texts[key]) for key in keys]

    def _corrections(self, session: Session, scope: Scope, words: list[str]) -> set[str]:
        """The vocabulary words to search for ``words``: a word found in the vocabulary
        stands for itself, any other for its few closest vocabulary words."""
        session.execute(
            text("SELECT set_config('pg_trgm.similarity_threshold', :t, true)"),
            {"t": _CORRECTION_THRESHOLD},
        )
        rows = session.execute(
            text(
                f"SELECT q.word AS typed, c.word FROM unnest(CAST(:words AS text[])) AS q(word) "
                f"CROSS JOIN LATERAL (SELECT v.word FROM {_quote(scope.name + '_words')} AS v "
                f"WHERE v.word % q.word ORDER BY v.word = q.word DESC, "
                f"similarity(v.word, q.word) DESC, v.word LIMIT :corrections) AS c"
            ),
            {"words": sorted(set(words)), "corrections": _CORRECTIONS},
        )
        found: dict[str, list[str]] = {}
        for typed, word in rows:
            found.setdefault(typed, []).append(word)
        return {
            word
            for typed, close in found.items()
            for word in ([typed] if typed in close else close)
        }

    def _ranked(
        self,
        session: Session,
        scope: Scope,
        query: str,
        filters: str,
        params: dict[str, Any],
        limit: int,
    ) -> list[tuple[Any, float]]:
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
