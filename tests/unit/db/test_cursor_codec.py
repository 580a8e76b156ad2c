from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.db import CursorCodec, listing_scope
from bastion.errors import ValidationFailed

CODEC = CursorCodec("secret-one")
values = st.lists(
    st.one_of(st.integers(), st.text(max_size=30), st.booleans()), min_size=1, max_size=4
)


@given(values)
def test_round_trip(items: list[object]) -> None:
    assert CODEC.decode(CODEC.encode("scope", items), "scope") == items


@given(values, st.integers(min_value=0, max_value=200), st.characters(categories=["L", "N"]))
def test_any_edit_is_refused(items: list[object], position: int, replacement: str) -> None:
    cursor = CODEC.encode("scope", items)
    index = position % len(cursor)
    edited = cursor[:index] + replacement + cursor[index + 1 :]
    if edited == cursor:
        return
    with pytest.raises(ValidationFailed):
        CODEC.decode(edited, "scope")


def test_other_secret_or_scope_is_refused() -> None:
    cursor = CODEC.encode("scope", [1, "a"])
    for codec, scope in ((CursorCodec("secret-two"), "scope"), (CODEC, "other")):
        with pytest.raises(ValidationFailed) as error:
            codec.decode(cursor, scope)
        assert error.value.errors[0].code == "invalid_cursor"


def test_datetimes_survive_and_scopes_differ_by_parameters() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert CODEC.decode(CODEC.encode("s", [moment, 3]), "s")[0] == {"$dt": moment.isoformat()}
    assert listing_scope("p", sort="price") != listing_scope("p", sort="name")
    assert listing_scope("p", a=1, b=2) == listing_scope("p", b=2, a=1)


def test_a_non_canonical_encoding_of_the_same_bytes_is_refused() -> None:
    import base64

    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for values in ([1], [1, "ab"], [12, "abc", True]):
        cursor = CODEC.encode("scope", values)
        if len(cursor) % 4 == 0:
            continue  # no spare bits in the last character
        last = alphabet.index(cursor[-1])
        spare = 4 if len(cursor) % 4 == 2 else 2
        twin = cursor[:-1] + alphabet[last ^ ((1 << spare) - 1)]
        padded = twin + "=" * (-len(twin) % 4)
        assert base64.urlsafe_b64decode(padded) == base64.urlsafe_b64decode(
            cursor + "=" * (-len(cursor) % 4)
        ), "the twin decodes to the same bytes"
        with pytest.raises(ValidationFailed):
            CODEC.decode(twin, "scope")
