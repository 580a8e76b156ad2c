"""Who is calling: bearer token, API key or session cookie, resolved once per request.

Sets ``state.user`` (the :class:`Principal` functions see), ``state.identity``,
``state.session`` and ``state.user_locale`` (the saved language preference). A
credential that is present but wrong is an error (401), never a silent fall-back
to anonymous: a client with an expired token must learn it, not get public data.

Cookie-authenticated unsafe requests must echo the session's CSRF token in
``X-CSRF-Token``; bearer tokens and API keys cannot be sent by a browser on its
own, so they need none.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import exc as sa_exc
from starlette.requests import cookie_parser

from bastion.auth.service import Authenticator, Identity, SessionStoreUnavailable
from bastion.auth.sessions import SessionRecord
from bastion.errors import BastionError, ServiceUnavailable
from bastion.functions.invoke import database_error
from bastion.http.middleware.errors import RenderError
from bastion.http.state import IDENTITY, SESSION, USER, USER_LOCALE, state
from bastion.observability.logs import get_logger
from bastion.types import ASGIApp, Message, Receive, Scope, Send

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class AuthenticationMiddleware:
    """Resolve the caller before rate limits, idempotency and functions see the request.

    Args:
        authenticator: The runtime's authenticator.
        render: Writes a problem response (401, 403 ``csrf_failed``).
        csrf_exempt: Paths that authenticate by what is in the body (login, token,
            register, refresh, revoke): they never act on the session's authority.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticator: Authenticator,
        render: RenderError,
        csrf_exempt: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.csrf_exempt = csrf_exempt
        self.authenticator = authenticator
        self.render = render
        self.cookie = authenticator.auth.session_cookie_name
        self.csrf_header = authenticator.auth.csrf_header.lower().encode("latin-1")
        self.log = get_logger("bastion.auth")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        bearer = api_key = cookies = csrf = None
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                bearer = value.decode("latin-1")
            elif name == b"x-api-key":
                api_key = value.decode("latin-1").strip()
            elif name == b"cookie":
                cookies = value.decode("latin-1")
            elif name == self.csrf_header:
                csrf = value.decode("latin-1")
        try:
            identity = await self._resolve(scope, bearer, api_key, cookies)
            if (
                identity is not None
                and identity.method == "session"
                and scope.get("method", "GET") not in SAFE_METHODS
                and scope["path"] not in self.csrf_exempt
                and (
                    identity.session is None
                    or not Authenticator.csrf_matches(identity.session, csrf)
                )
            ):
                raise BastionError("csrf_failed")
        except BastionError as exc:
            await self.render(scope, receive, send, exc)
            return
        except sa_exc.DBAPIError as exc:
            await self.render(scope, receive, send, database_error(exc))
            return
        except SessionStoreUnavailable as exc:
            # The session store (Redis) is down: nobody can be told who they are, and
            # serving them as anonymous would be wrong, so answer "try again".
            self.log.warning("session_store_unavailable", error=str(exc))
            await self.render(
                scope, receive, send, ServiceUnavailable(headers={"Retry-After": "5"})
            )
            return
        record = state(scope).get(SESSION)
        if record is None:
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, self._saving(scope, record, send))

    def _saving(self, scope: Scope, record: SessionRecord, send: Send) -> Send:
        """Save the session's data before the response starts, if a function changed it
        and the response is a success (a failed mutation's changes are dropped with it)."""
        before = _fingerprint(record.data)

        async def send_after_saving(message: Message) -> None:
            if (
                message["type"] == "http.response.start"
                and message["status"] < 400
                # Login and logout replace or end the session; the old one stays gone.
                and state(scope).get(SESSION) is record
                and _fingerprint(record.data) != before
            ):
                await self.authenticator.sessions.save(record)
            await send(message)

        return send_after_saving

    async def _resolve(
        self, scope: Scope, bearer: str | None, api_key: str | None, cookies: str | None
    ) -> Identity | None:
        identity: Identity | None = None
        if bearer is not None:
            scheme, _, token = bearer.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise BastionError("token_invalid", headers={"WWW-Authenticate": "Bearer"})
            identity = await self.authenticator.from_bearer(token.strip())
        elif api_key:
            identity = await self.authenticator.from_api_key(api_key)
        elif cookies is not None:
            session_id = cookie_parser(cookies).get(self.cookie)
            if session_id:
                record, identity = await self.authenticator.from_session(session_id)
                state(scope)[SESSION] = record
        if identity is not None:
            values = state(scope)
            values[IDENTITY] = identity
            values[USER] = identity.principal
            if identity.user.locale:
                values[USER_LOCALE] = identity.user.locale
        elif (record := state(scope).get(SESSION)) is not None:
            preferences = record.data.get("preferences")
            language = preferences.get("language") if isinstance(preferences, dict) else None
            if isinstance(language, str):
                state(scope)[USER_LOCALE] = language
        return identity


def _fingerprint(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, default=str)
