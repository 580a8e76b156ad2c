from __future__ import annotations

import pytest

from bastion.http.problems import field_path
from bastion.http.responses import accepts_json, etag_for, etag_matches


@pytest.mark.parametrize(
    ("accept", "ok"),
    [
        ("application/json", True),
        ("*/*", True),
        ("text/html, application/*;q=0.8", True),
        ("application/problem+json", True),
        ("application/vnd.api+json", True),
        ("text/html", False),
        ("text/csv, application/json;q=0", False),
        ("application/json;q=0.5", True),
    ],
)
def test_accepts_json(accept: str, ok: bool) -> None:
    assert accepts_json(accept) is ok


def test_etag_matching_handles_lists_weak_tags_and_star() -> None:
    tag = etag_for(b"body")
    assert etag_matches(tag, tag)
    assert etag_matches(f'"other", W/{tag}', tag)
    assert etag_matches("*", tag)
    assert not etag_matches('"other"', tag)
    assert etag_for(b"body") == tag != etag_for(b"body2")


def test_field_paths_read_like_the_contract() -> None:
    assert field_path(("body", "items", 0, "quantity")) == "items[0].quantity"
    assert field_path(("query", "limit")) == "limit"
    assert field_path(("body",)) == "body"
