"""``Idempotency-Key`` on unsafe requests: run once, replay the stored response to retries."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio
import anyio.to_thread
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException

from bastion.errors import BastionError
from bastion.http.middleware.errors import RenderError
from bastion.http.state import caller_of, header
from bastion.idempotency import (
    IdempotencyStore,
    InProgress,
    Proceed,
    Replay,
    Reused,
    StoredResponse,
)
from bastion.observability.logs import get_logger
from bastion.types import ASGIApp, Message, Receive, Scope, Send

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"

#: 1 to 255 visible ASCII characters.
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
_KEY = re.compile(KEY_PATTERN)
#: What a replay needs besides status and body; everything else is added again by the
#: middleware outside this one (request id, rate limit, security headers).
_STORED_HEADERS = frozenset({b"content-type", b"location"})


class IdempotencyMiddleware:
    """Claims the caller's key before the request runs and stores its final response.

    Only unsafe requests that carry the header are touched; their body is read
    whole (the body limit outside bounds it) so that it can be fingerprinted, then
    handed to the app unchanged. Answers that mean "try again" (429, 500 and above)
    are not stored: the claim is dropped, so that a retry runs again.

    Args:
        store: The runtime's idempotency records.
        render: Writes a problem response (400, 409, 422, or 503 when the store fails).
    """

    def __init__(self, app: ASGIApp, *, store: IdempotencyStore, render: RenderError) -> None:
        self.app = app
        self.store = store
        self.render = render
        self.log = get_logger("bastion.idempotency")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = None
        if scope["type"] == "http" and scope["method"] in UNSAFE_METHODS:
            key = header(scope, b"idempotency-key")
        if key is None:
            await self.app(scope, receive, send)
            return
        if not _KEY.fullmatch(key):
            await self.render(scope, receive, send, BastionError("idempotency_key_invalid"))
            return
        try:
            body = await _read_body(receive)
        except HTTPException as exc:  # the body limit's 413
            await self.render(scope, receive, send, exc)
            return
        if body is None:
            return  # the client left before sending its whole request: nothing to run
        _, caller = caller_of(scope)
        try:
            begun = await anyio.to_thread.run_sync(
                self.store.begin, caller, key, fingerprint_of(scope, body), datetime.now(UTC)
            )
        except DBAPIError as exc:
            # Without the store there is no telling whether this is a duplicate, so the
            # request is refused rather than risked twice.
            await self.render(scope, receive, send, exc)
            return
        match begun:
            case Proceed(lease=lease):
                await self._run(scope, receive, send, body, Claim(caller, key, lease))
            case Replay(response=response):
                await _replay(send, response)
            case Reused():
                await self.render(scope, receive, send, BastionError("idempotency_key_reused"))
            case InProgress():
                busy = BastionError("idempotency_in_progress", headers={"Retry-After": "1"})
                await self.render(scope, receive, send, busy)

    async def _run(
        self, scope: Scope, receive: Receive, send: Send, body: bytes, claim: Claim
    ) -> None:
        delivered = False

        async def receive_body() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        status = 0
        headers: tuple[tuple[str, str], ...] = ()
        chunks: list[bytes] = []
        settled = False

        async def capture(message: Message) -> None:
            nonlocal status, headers, settled
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = _kept(message.get("headers", ()))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    # Stored before the last chunk leaves, so a client that retries the
                    # moment it has the answer gets a replay, not "in progress".
                    settled = True
                    await self._settle(claim, StoredResponse(status, headers, b"".join(chunks)))
            await send(message)

        try:
            await self.app(scope, receive_body, capture)
        finally:
            if not settled:
                with anyio.CancelScope(shield=True):
                    await self._abandon(claim)

    async def _settle(self, claim: Claim, response: StoredResponse) -> None:
        if response.status_code >= 500 or response.status_code == 429:
            await self._abandon(claim)
            return
        try:
            stored = await anyio.to_thread.run_sync(
                self.store.complete, claim.caller, claim.key, claim.lease, response
            )
        except DBAPIError as exc:
            # The work is done and the client gets its answer; the claim stays in
            # progress until its lease ends, then a retry runs again.
            self.log.error("idempotency_store_failed", key=claim.key, error=str(exc))
            return
        if not stored:
            self.log.warning("idempotency_claim_taken_over", key=claim.key)

    async def _abandon(self, claim: Claim) -> None:
        try:
            await anyio.to_thread.run_sync(self.store.abandon, claim.caller, claim.key, claim.lease)
        except DBAPIError as exc:
            self.log.error("idempotency_store_failed", key=claim.key, error=str(exc))


@dataclass(frozen=True, slots=True)
class Claim:
    """The key a running request holds: whose, which, and the lease it was given."""

    caller: str
    key: str
    lease: datetime


def fingerprint_of(scope: Scope, body: bytes) -> str:
    """What makes two requests "the same": method, path and query, body, content type."""
    query = scope.get("query_string", b"").decode("latin-1")
    target = scope["path"] + (f"?{query}" if query else "")
    parts = (
        scope["method"],
        target,
        hashlib.sha256(body).hexdigest(),
        header(scope, b"content-type") or "",
    )
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _kept(raw: Iterable[tuple[bytes, bytes]]) -> tuple[tuple[str, str], ...]:
    return tuple(
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in raw
        if name.lower() in _STORED_HEADERS
    )


async def _replay(send: Send, response: StoredResponse) -> None:
    headers = [
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers
    ]
    if response.status_code not in (204, 304):  # these must not declare a length
        headers.append((b"content-length", str(len(response.body)).encode()))
    headers.append((REPLAYED_HEADER.lower().encode(), b"true"))
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.body, "more_body": False})
