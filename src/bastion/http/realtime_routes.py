"""The realtime transports: ``GET /realtime`` (WebSocket) and ``GET /events`` (SSE).

Both hand a :class:`bastion.realtime.Connection` to the process's
:class:`bastion.realtime.Realtime` hub and copy its send queue to the client. Callers
are who the authentication middleware says they are (session cookie, bearer token, API
key); a WebSocket may instead send ``{"type": "auth", "token": ...}`` as its first
message, within ``[realtime] auth_timeout_s``, since browsers cannot set headers on one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request, WebSocket
from fastapi.responses import StreamingResponse
from starlette.websockets import WebSocketDisconnect

from bastion.auth.service import Authenticator
from bastion.errors import BadRequest, BastionError
from bastion.http.state import header, identity_of, locale_of
from bastion.realtime import Connection, Realtime
from bastion.realtime.connection import CLOSE_GOING_AWAY, CLOSE_ORIGIN, CLOSE_SIGNED_OUT
from bastion.settings.sections import Settings

#: Client messages above this are refused: subscriptions are small.
MAX_CLIENT_MESSAGE = 16_384


def build_realtime_router(
    realtime: Realtime, authenticator: Authenticator, settings: Settings
) -> APIRouter:
    router = APIRouter()
    config = settings.realtime

    def open_connection(scope: Any) -> Connection:
        identity = identity_of(scope)
        expires_at = identity.expires_at if identity is not None else None
        return realtime.connect(
            identity.principal if identity is not None else None,
            locale=locale_of(scope, settings),
            session_key=identity.session.key if identity is not None and identity.session else None,
            token_expires_at=expires_at.timestamp() if expires_at is not None else None,
        )

    async def still_signed_in(connection: Connection) -> None:
        """Heartbeat check: an ended session or an expired token closes the connection."""
        realtime.recheck(connection)
        if connection.session_key is not None and not connection.closed.is_set():
            record = await authenticator.sessions.load(connection.session_key)
            if record is None or record.is_expired(datetime.now(UTC)):
                connection.close(
                    CLOSE_SIGNED_OUT,
                    "not_authenticated",
                    error=realtime.error(connection, "not_authenticated"),
                )

    @router.websocket("/realtime")
    async def realtime_socket(websocket: WebSocket) -> None:
        """Subscribe to queries and channels; see docs/howto/realtime.md."""
        scope = websocket.scope
        await websocket.accept()
        identity = identity_of(scope)
        by_cookie = identity is not None and identity.method == "session"
        if by_cookie and not _same_site(scope, settings):
            # A cookie rides along with any page's WebSocket: only trusted origins may
            # use it (cross-site WebSocket hijacking).
            refusal = {"type": "error", "code": "permission_denied", "detail": "origin not allowed"}
            await websocket.send_text(json.dumps(refusal))
            await websocket.close(CLOSE_ORIGIN, "origin_not_allowed")
            return
        connection = open_connection(scope)
        opened = time.monotonic()

        async def read() -> None:
            first = True
            while True:
                text = await websocket.receive_text()
                message = _parse(text)
                if message is None:
                    connection.push(realtime.error(connection, "invalid_json"))
                    continue
                if message.get("type") == "auth":
                    await authenticate(message, first=first)
                else:
                    await realtime.handle(connection, message)
                first = False

        async def authenticate(message: dict[str, Any], *, first: bool) -> None:
            late = time.monotonic() - opened > config.auth_timeout_s
            if not first or late or connection.user is not None:
                detail = "auth must be the first message, within the auth timeout"
                connection.push(realtime.error(connection, "bad_request", detail=detail))
                return
            token = message.get("token")
            try:
                if not isinstance(token, str) or not token:
                    raise BastionError("token_invalid")
                caller = await authenticator.from_bearer(token)
            except BastionError as failure:
                code = failure.error_code
                connection.close(CLOSE_SIGNED_OUT, code, error=realtime.error(connection, code))
                return
            expires_at = caller.expires_at.timestamp() if caller.expires_at else None
            realtime.authenticate(connection, caller.principal, token_expires_at=expires_at)
            connection.push({"type": "authenticated", "user_id": caller.principal.id})

        async def write() -> None:
            while True:
                await websocket.send_text(await connection.outbox.get())

        async def heartbeat() -> None:
            while True:
                await asyncio.sleep(config.heartbeat_s)
                await still_signed_in(connection)
                connection.push({"type": "ping"})

        try:
            await _first_to_end(read(), write(), heartbeat(), connection.closed.wait())
        finally:
            realtime.disconnect(connection)
        if connection.close_code not in (None, 1000):
            # Server-side close: send what is queued (the error saying why), then close.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1):
                    while not connection.outbox.empty():
                        await websocket.send_text(connection.outbox.get_nowait())
                    code = connection.close_code or CLOSE_GOING_AWAY
                    await websocket.close(code, connection.close_reason)

    @router.get(
        "/events",
        tags=["realtime"],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def realtime_events(
        request: Request,
        channel: list[str] = Query(default=[], max_length=64),
        query: str | None = Query(default=None, max_length=100),
        args: str | None = Query(default=None, max_length=MAX_CLIENT_MESSAGE),
    ) -> StreamingResponse:
        """Server-sent events: the same channels and query results as ``/realtime``.

        ``?channel=cart&channel=news``, ``?query=product&args={"id": 7}``; each message
        is an SSE event named after its ``event`` (channels) or ``type`` (``result``,
        ``error``); ``: ping`` comments keep proxies from closing the stream.
        """
        parsed_args = None
        if args is not None:
            parsed_args = _parse(args)
            if parsed_args is None:
                raise BadRequest("invalid_json")
        connection = open_connection(request.scope)
        try:
            for name in channel:
                realtime.subscribe_channel(connection, name)
            if query is not None:
                await realtime.subscribe_query(connection, query, parsed_args or {})
        except BaseException:
            realtime.disconnect(connection)
            raise
        return StreamingResponse(
            _event_stream(realtime, connection, config.heartbeat_s, still_signed_in),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return router


async def _event_stream(
    realtime: Realtime,
    connection: Connection,
    heartbeat_s: float,
    check: Any,
) -> AsyncIterator[str]:
    try:
        yield "retry: 3000\n\n"
        while True:
            getter = asyncio.ensure_future(connection.outbox.get())
            closer = asyncio.ensure_future(connection.closed.wait())
            done, _ = await asyncio.wait(
                {getter, closer}, timeout=heartbeat_s, return_when=asyncio.FIRST_COMPLETED
            )
            if getter in done:
                closer.cancel()
                text = getter.result()
                message = json.loads(text)
                name = message.get("event") if message.get("type") == "event" else None
                yield f"event: {name or message.get('type')}\ndata: {text}\n\n"
                continue
            getter.cancel()
            closer.cancel()
            if connection.closed.is_set():
                while not connection.outbox.empty():
                    yield f"event: error\ndata: {connection.outbox.get_nowait()}\n\n"
                return
            await check(connection)
            yield ": ping\n\n"
    finally:
        realtime.disconnect(connection)


async def _first_to_end(*work: Awaitable[Any]) -> None:
    """Run ``work`` together until one part ends (or fails); cancel the rest."""
    tasks = [asyncio.ensure_future(part) for part in work]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            error = task.exception()
            if error is not None and not isinstance(error, WebSocketDisconnect):
                raise error
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task


def _parse(text: str) -> dict[str, Any] | None:
    if len(text) > MAX_CLIENT_MESSAGE:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _same_site(scope: Any, settings: Settings) -> bool:
    origin = header(scope, b"origin")
    if origin is None:
        return True  # not a browser page: no ambient cookie to abuse
    trusted = {*settings.realtime.allowed_origins, *settings.cors.allow_origins}
    if origin in trusted or "*" in settings.realtime.allowed_origins:
        return True
    return urlsplit(origin).netloc == (header(scope, b"host") or "")
