"""Typo scoring: trigram similarity in the manner of PostgreSQL's ``pg_trgm``.

Both backends only *find* typo candidates in the database; the score is computed
here, once, so "blak coffee" ranks the same way on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

from bastion.search.base import WEIGHTS, Weight, query_words


@lru_cache(maxsize=4096)
def trigrams(word: str) -> frozenset[str]:
    """``pg_trgm``'s trigrams of one word: padded with two spaces before, one after."""
    padded = f"  {word.lower()} "
    return frozenset(padded[i : i + 3] for i in range(len(padded) - 2))


def word_similarity(a: str, b: str) -> float:
    """Shared trigrams over all trigrams of two words (``pg_trgm.similarity``)."""
    ta, tb = trigrams(a), trigrams(b)
    union = len(ta | tb)
    return len(ta & tb) / union if union else 0.0


def text_similarity(words: list[str], text: str) -> float:
    """How well the query words appear in ``text``: each word's best match, averaged."""
    if not words:
        return 0.0
    candidates = set(query_words(text, max_words=10_000))
    if not candidates:
        return 0.0
    return sum(max(word_similarity(w, c) for c in candidates) for w in words) / len(words)


def fuzzy_rank(
    words: list[str],
    texts: Mapping[str, str | None],
    weights: Mapping[str, Weight],
    threshold: float,
) -> float:
    """Rank in ``[0, 1)`` of a typo match, or 0 when no field reaches ``threshold``.

    The field's weight multiplies its similarity, so a close name match outranks a
    close description match, as with word matches.
    """
    best = 0.0
    for field, text in texts.items():
        score = text_similarity(words, text or "")
        if score >= threshold:
            best = max(best, WEIGHTS[weights[field]] * score)
    return min(best, 0.999)
