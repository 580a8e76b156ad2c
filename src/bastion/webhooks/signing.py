"""Webhook signatures: ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">``.

The format is Stripe's, and the shop's payment gateway uses it too. The timestamp is
inside the MAC, so a captured request cannot be replayed later under a fresh ``t``;
the receiver refuses timestamps outside a tolerance (300 s by default) either way.

Rotation: a sender may put several ``v1=`` entries in one header (one per secret it
is rotating through) and a receiver may accept several secrets; one match is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence

from bastion.errors import InvalidSignature

#: A SHA-256 MAC in hex; anything else in a ``v1=`` entry cannot match and is ignored.
_HEX_MAC = re.compile(r"^[0-9a-f]{64}$")
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")


def sign(secret: str, body: bytes, timestamp: int, *, scheme: str = "v1") -> str:
    """The signature header value for ``body`` sent at ``timestamp`` (unix seconds)."""
    return f"t={timestamp},{scheme}={_mac(secret, body, timestamp)}"


def verify_signature(
    secret: str | Sequence[str],
    body: bytes,
    header: str | None,
    *,
    now: float,
    tolerance_s: float = 300,
    scheme: str = "v1",
) -> None:
    """Check that ``header`` signs ``body`` with ``secret`` (or one of several) at a time
    within ``tolerance_s`` of ``now``.

    Args:
        secret: The shared secret, or several while rotating (any may match).
        body: The raw request body, byte for byte as received.
        header: The signature header's value; ``None`` when the request had none.
        now: The current unix time (a parameter, so tests and callers control the clock).
        tolerance_s: How far the signed timestamp may be from ``now``, either way.
        scheme: The name of the MAC entries (``v1``); entries of other schemes are ignored.

    Raises:
        InvalidSignature: missing, malformed, stale, from the future, or no MAC matches.
            ``reason`` says which (for logs; the client is told nothing more).
    """
    secrets = [secret] if isinstance(secret, str) else list(secret)
    if not secrets or not all(secrets):
        raise ValueError("verify_signature needs at least one non-empty secret")
    if not header:
        raise InvalidSignature("missing")
    timestamps: list[str] = []
    macs: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise InvalidSignature("malformed")
        if name == "t":
            timestamps.append(value)
        elif name == scheme and _HEX_MAC.match(value):
            macs.append(value)
    if len(timestamps) != 1 or not _TIMESTAMP.match(timestamps[0]) or not macs:
        raise InvalidSignature("malformed")
    timestamp = int(timestamps[0])
    if timestamp < now - tolerance_s:
        raise InvalidSignature("stale")
    if timestamp > now + tolerance_s:
        raise InvalidSignature("future")
    # compare_digest over every pair: the time taken does not depend on how much of a
    # forged MAC was right.
    expected = [_mac(key, body, timestamp).encode() for key in secrets]
    matched = False
    for candidate in macs:
        for mac in expected:
            matched |= hmac.compare_digest(mac, candidate.encode())
    if not matched:
        raise InvalidSignature("mismatch")


def _mac(secret: str, body: bytes, timestamp: int) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
