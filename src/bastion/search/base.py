"""What every search backend shares: hits, weights, the backend Protocol, query words.

A backend turns a :class:`~bastion.search.index.SearchIndex` declaration into its
database's own full-text machinery. Both backends answer the same two questions in
two stages, so rankings line up across databases:

1. *word matches*: every query word must appear (the last one as a prefix, for
   search-as-you-type), ranked by the database's full-text score with per-field
   weights (SQLite ``bm25``, PostgreSQL ``ts_rank_cd``);
2. *typo matches*, only when stage 1 cannot fill the page: candidates found by
   trigrams (SQLite: the rows' text in an FTS5 ``trigram`` table; PostgreSQL: the
   query words corrected against a vocabulary with ``pg_trgm``, then a word query),
   all scored by the one Python function in :mod:`bastion.search.similarity`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from sqlalchemy import Connection
from sqlalchemy.orm import Session

Weight = Literal["A", "B", "C", "D"]

#: Relative field weights, the same numbers on both databases. They are spread far
#: apart so that a match in a higher-weight field outranks any number of matches
#: in lower-weight ones (PostgreSQL's defaults, 1.0/0.4/0.2/0.1, do not promise that).
WEIGHTS: dict[str, float] = {"A": 1.0, "B": 0.1, "C": 0.01, "D": 0.001}

# Words are runs of letters and digits: everything else (quotes, ``*``, ``-``,
# parentheses, colons) is dropped, so user input can never reach the FTS grammar.
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


@dataclass(frozen=True)
class Hit:
    """One search result.

    Attributes:
        key: The row's key (the index's ``key`` column).
        rank: Higher is better. Word matches rank ``>= 1`` and typo matches ``< 1``,
            so the two stages never interleave; magnitudes within a stage are
            backend-specific, orders are comparable.
        fuzzy: Whether the hit came from typo tolerance rather than a word match.
    """

    key: Any
    rank: float
    fuzzy: bool = False


def query_words(text: str, *, max_words: int = 16) -> list[str]:
    """The searchable words of user input, lower-cased, at most ``max_words``."""
    return [word.lower() for word in _WORD.findall(text)][:max_words]


@dataclass(frozen=True)
class Scope:
    """What a backend needs from the declaration, resolved to names."""

    name: str
    table: str
    key: str
    fields: Mapping[str, Weight]
    language: str


class SearchBackend(Protocol):
    """One database's implementation of a search index."""

    def create(self, connection: Connection, scope: Scope) -> None:
        """Create the index's tables (empty; run :meth:`rebuild` to fill them)."""

    def drop(self, connection: Connection, scope: Scope) -> None:
        """Drop the index's tables."""

    def sync(self, session: Session, scope: Scope, keys: Sequence[Any]) -> None:
        """Make the index entries of ``keys`` match their rows (absent rows: removed)."""

    def remove(self, session: Session, scope: Scope, keys: Sequence[Any]) -> None:
        """Remove the entries of ``keys``."""

    def clear(self, session: Session, scope: Scope) -> None:
        """Remove every entry."""

    def word_hits(
        self,
        session: Session,
        scope: Scope,
        words: list[str],
        filters: str,
        params: dict[str, Any],
        limit: int,
    ) -> list[tuple[Any, float]]:
        """``(key, score)`` of rows containing every word (last one as a prefix), best
        first, score higher-is-better. ``filters`` is SQL on the source table ``t``."""

    def fuzzy_candidates(
        self,
        session: Session,
        scope: Scope,
        words: list[str],
        filters: str,
        params: dict[str, Any],
        limit: int,
    ) -> list[tuple[Any, dict[str, str | None]]]:
        """``(key, {field: text})`` of rows with words close to ``words`` by trigrams."""
