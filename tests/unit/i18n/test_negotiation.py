from __future__ import annotations

import pytest

from bastion.i18n import negotiate_locale, parse_accept_language

AVAILABLE = ["en", "es", "tr"]


def test_accept_language_is_ordered_by_quality() -> None:
    assert parse_accept_language("en;q=0.2, tr-TR, es;q=0.8, *;q=0.1, de;q=0") == [
        "tr-TR",
        "es",
        "en",
    ]
    assert parse_accept_language("fr;q=abc, ,") == []


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"accept_language": "tr-TR,tr;q=0.9"}, "tr"),
        ({"accept_language": "es-MX"}, "es"),
        ({"accept_language": "fr, de"}, "en"),
        ({"accept_language": "fr, es;q=0.5"}, "es"),
        ({"explicit": "tr", "preference": "es", "accept_language": "es"}, "tr"),
        ({"preference": "es", "accept_language": "tr"}, "es"),
        ({"explicit": "xx", "accept_language": "tr"}, "tr"),
        ({}, "en"),
    ],
)
def test_precedence_is_lang_then_preference_then_header(
    kwargs: dict[str, str], expected: str
) -> None:
    assert negotiate_locale(AVAILABLE, "en", **kwargs) == expected
