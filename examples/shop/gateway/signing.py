"""The ``Gateway-Signature`` header on the gateway's webhooks.

Shared by the gateway (which signs) and whoever receives its webhooks (the shop, the
tests), so both sides agree on one format: ``t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<raw body>">``. The timestamp is inside the MAC so a captured delivery cannot be
replayed later under a fresh ``t``.
"""

from __future__ import annotations

import hashlib
import hmac


def _mac(secret: str, body: bytes, timestamp: int) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The header value for ``body`` sent at ``timestamp`` (unix seconds)."""
    return f"t={timestamp},v1={_mac(secret, body, timestamp)}"


def verify(secret: str, body: bytes, header: str, *, now: int, tolerance_s: int = 300) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` and is at most ``tolerance_s`` old.

    Every failure (malformed, stale, wrong MAC) is just ``False``: a receiver answers them
    all alike, so a forger learns nothing about which part was wrong.
    """
    fields: dict[str, str] = {}
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        fields.setdefault(name, value)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(_mac(secret, body, timestamp), fields.get("v1", ""))
