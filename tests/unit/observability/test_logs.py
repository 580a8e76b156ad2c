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
