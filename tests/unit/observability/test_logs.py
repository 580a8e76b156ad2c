from __future__ import annotations

from bastion.observability import scrub


def test_secrets_are_scrubbed_by_key_and_by_shape() -> None:
    event = {
        "password": "hunter2",
        "headers": {"Authorization": "Bearer abc.def.ghi", "accept": "json"},
        "note": "paid with 4111 1111 1111 1111 today",
        "detail": "sent Bearer eyJhbGciOi.x.y upstream",
        "api_key": None,
    }
    assert scrub(event) == {
        "password": "[redacted]",
        "headers": {"Authorization": "[redacted]", "accept": "json"},
        "note": "paid with [redacted] today",
        "detail": "sent Bearer [redacted] upstream",
        "api_key": None,
    }


def test_pan_is_a_secret_key_only_as_a_word_of_its_own() -> None:
    span_id = "00f067aa0ba902b7"
    scrubbed = scrub({"card_pan": "4111", "pan": "4111", "span_id": span_id})

    assert scrubbed == {"card_pan": "[redacted]", "pan": "[redacted]", "span_id": span_id}
