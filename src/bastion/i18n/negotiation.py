"""Choose a locale from ``?lang=``, a saved preference and ``Accept-Language``.

The precedence (shop-api.md, Conventions) is: explicit ``lang`` parameter, the
user's saved preference, the ``Accept-Language`` header, then the default.
Babel does the matching of language tags to the locales an app ships.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from babel import negotiate_locale as _babel_negotiate


def parse_accept_language(header: str) -> list[str]:
    """Language tags from an ``Accept-Language`` header, best first (q-values honoured)."""
    weighted: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")):
        piece = part.strip()
        if not piece:
            continue
        tag, _, params = piece.partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                quality = 0.0
        tag = tag.strip()
        if quality > 0 and tag and tag != "*" and len(tag) <= 35:
            weighted.append((-quality, index, tag))
    return [tag for _, _, tag in sorted(weighted)]


def negotiate_locale(
    available: Sequence[str],
    default: str,
    *,
    explicit: str | None = None,
    preference: str | None = None,
    accept_language: str | None = None,
) -> str:
    """The best locale of ``available`` for a request; ``default`` when nothing matches."""
    return _negotiate(tuple(available), default, explicit, preference, accept_language)


@lru_cache(maxsize=1024)
def _negotiate(
    available: tuple[str, ...],
    default: str,
    explicit: str | None,
    preference: str | None,
    accept_language: str | None,
) -> str:
    for candidate in (explicit, preference):
        if candidate:
            found = _babel_negotiate([candidate.replace("_", "-")], list(available), sep="-")
            if found:
                return str(found)
    if accept_language:
        preferred = parse_accept_language(accept_language)
        if preferred:
            found = _babel_negotiate(preferred, list(available), sep="-")
            if found:
                return str(found)
    return default
