"""Signed, expiring download URLs: ``/files/{id}?expires=<unix s>&sig=<hex HMAC>``."""

from __future__ import annotations

import hashlib
import hmac
import time

from bastion.errors import BastionError, InvalidSignature

#: Separates this key from every other use of ``app.secret_key``.
_PURPOSE = b"bastion.files.signed-url.v1"


class UrlSigner:
    """Signs ``"<id>.<expires>"`` with HMAC-SHA256 under a key derived from the app secret.

    The key is ``HMAC(secret_key, purpose label)``, so a file signature can never be
    replayed as a cursor, token or webhook signature made with the same secret.
    """

    def __init__(self, secret_key: str) -> None:
        self._key = hmac.new(secret_key.encode(), _PURPOSE, hashlib.sha256).digest()

    def sign(self, file_id: str, expires: int) -> str:
        message = f"{file_id}.{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def url(self, prefix: str, file_id: str, ttl_s: int) -> tuple[str, int]:
        """The URL and its expiry (unix seconds): at least ``ttl_s`` away, rounded up to
        a tenth of it, so the same URL is handed out for a while and responses that hold
        it stay byte-identical (ETags, realtime results sent only when changed)."""
        step = max(1, ttl_s // 10)
        expires = -(-(int(time.time()) + ttl_s) // step) * step
        return f"{prefix}/{file_id}?expires={expires}&sig={self.sign(file_id, expires)}", expires

    def verify(self, file_id: str, expires: str | None, sig: str | None) -> int:
        """Seconds the URL has left.

        Raises:
            InvalidSignature: (403) ``sig`` or ``expires`` is missing, malformed, or the
                signature does not match the id and expiry.
            BastionError: (403 ``url_expired``) a genuine URL past its expiry.
        """
        if not expires or not sig or not expires.isdigit() or len(expires) > 12:
            raise InvalidSignature("missing or malformed", status=403)
        # The signature is checked first, in constant time: a changed ``expires`` is a
        # forgery, never an expiry.
        if not hmac.compare_digest(self.sign(file_id, int(expires)), sig):
            raise InvalidSignature("mismatch", status=403)
        remaining = int(expires) - int(time.time())
        if remaining <= 0:
            raise BastionError("url_expired")
        return remaining
