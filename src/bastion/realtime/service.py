"""The realtime hub of one process: its connections, their subscriptions, and the bus.

Everything that changes what a client should see arrives on the bus
(:mod:`bastion.pubsub`), from this process or another:

- ``writes``: the tables a commit wrote. Query subscriptions that read one of them run
  again; a result equal to the last one sent is not sent. Subscriptions with the same
  query, arguments and caller share one run, so a thousand clients watching one product
  cost one query per commit.
- ``realtime``: an event for a channel, for one user or for everyone subscribed.
- ``signout``: a user was banned or signed out everywhere, or one session ended; the
  connections they authorised are closed.

A lost bus subscription may have dropped messages, so after a reconnect every query
subscription runs again.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError, create_model
from pydantic_core import to_jsonable_python
from sqlalchemy.orm import Session

from bastion.auth.principal import Principal
from bastion.context import Context
from bastion.db.database import Database
from bastion.errors import BastionError
from bastion.errors.catalog import ErrorCatalog
from bastion.functions.invoke import Invoker
from bastion.functions.registry import FunctionSpec
from bastion.observability import get_logger
from bastion.pubsub import Bus, Message
from bastion.realtime.connection import (
    CLOSE_SIGNED_OUT,
    Connection,
    QuerySubscription,
    encode,
)
from bastion.realtime.declarations import RealtimeDeclarations
from bastion.settings.sections import RealtimeSection

#: ``session.info`` key of the events a transaction sends when it commits.
PENDING = "bastion.realtime.pending"
#: ``session.info`` key of the runtime's :class:`Realtime` in every write session.
SERVICE = "bastion.realtime"


def send(
    target: Context | Session,
    channel: str,
    event: str,
    data: Any,
    *,
    user_id: Any = None,
) -> None:
    """Send ``event`` with ``data`` to the subscribers of ``channel``.

    ``target`` is the caller's context or write session. In a transaction the event
    leaves when it commits (a rolled-back mutation sends nothing); in an action, at once.
    On a per-user channel ``user_id`` says whose connections hear it.

    Raises:
        ValueError: unknown channel, a per-user channel without ``user_id``, or an event
            too large for the bus (PostgreSQL NOTIFY carries under 8,000 bytes).
    """
    if not isinstance(target, Session) and not isinstance(target.db, Session):
        service: Realtime = target.services.realtime  # an action: no transaction to wait for
        service.bus.send_encoded(service.encode(channel, event, data, user_id=user_id))
        return
    session = target if isinstance(target, Session) else target.db
    assert session is not None  # checked above; mypy loses the narrowing through .db
    realtime: Realtime = session.info[SERVICE]
    payload = realtime.encode(channel, event, data, user_id=user_id)
    session.info.setdefault(PENDING, []).append(payload)


class Realtime:
    """Connections and subscriptions of this process.

    Args:
        declarations: The app's channels and subscribable queries.
        functions: The app's functions by name.
        invoker: Runs queries for subscriptions.
        bus: Where writes, events and sign-outs arrive.
        database: Events sent in a transaction leave when it commits.
        catalog: Error messages, in each client's locale.
        settings: ``[realtime]``.
    """

    def __init__(
        self,
        *,
        declarations: RealtimeDeclarations,
        functions: Mapping[str, FunctionSpec],
        invoker: Invoker,
        bus: Bus,
        database: Database,
        catalog: ErrorCatalog,
        settings: RealtimeSection,
    ) -> None:
        self.declarations = declarations
        self.functions = functions
        self.invoker = invoker
        self.bus = bus
        self.catalog = catalog
        self.settings = settings
        self.log = get_logger("bastion.realtime")
        self.connections: set[Connection] = set()
        self._by_user: dict[str, set[Connection]] = {}
        self._members: dict[str, set[Connection]] = {}
        self._followers: dict[str, set[tuple[Connection, QuerySubscription]]] = {}
        self._running: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._writes_seen = 0
        self._arg_models: dict[str, type[BaseModel]] = {}
        bus.subscribe("realtime", self._on_event)
        bus.subscribe("writes", self._on_writes)
        bus.subscribe("signout", self._on_signout)
        bus.on_gap(self._rerun_all)
        database.on_commit(self._after_commit)
        database.share_with_sessions(SERVICE, self)

    # -- publishing ---------------------------------------------------------------------

    def encode(self, channel: str, event: str, data: Any, *, user_id: Any = None) -> str:
        spec = self.declarations.channels.get(channel)
        if spec is None:
            raise ValueError(f"channel {channel!r} is not declared (app.channel)")
        if spec.per_user and user_id is None:
            raise ValueError(f"channel {channel!r} is per user: say which with user_id=")
        body = {
            "c": channel,
            "e": event,
            "d": to_jsonable_python(data),
            "u": None if user_id is None else str(user_id),
        }
        return self.bus.encode("realtime", body)

    def publish(self, channel: str, event: str, data: Any, *, user_id: Any = None) -> None:
        """Send an event now, from any thread (see :func:`send` for mutations)."""
        self.bus.send_encoded(self.encode(channel, event, data, user_id=user_id))

    def signed_out(self, user_id: str, session_key: str | None = None) -> None:
        """Close the user's connections everywhere (only ``session_key``'s, when given)."""
        self.bus.publish("signout", {"u": str(user_id), "s": session_key})

    def _after_commit(self, session: Session) -> None:
        for payload in session.info.pop(PENDING, ()):
            self.bus.send_encoded(payload)

    # -- connections --------------------------------------------------------------------

    def connect(
        self,
        user: Principal | None,
        *,
        locale: str = "en",
        session_key: str | None = None,
        token_expires_at: float | None = None,
    ) -> Connection:
        connection = Connection(
            user=user,
            locale=locale,
            queue_size=self.settings.send_queue,
            session_key=session_key,
            token_expires_at=token_expires_at,
        )
        self.connections.add(connection)
        if connection.user_id is not None:
            self._by_user.setdefault(connection.user_id, set()).add(connection)
        return connection

    def authenticate(
        self, connection: Connection, user: Principal, *, token_expires_at: float | None
    ) -> None:
        """Make an anonymous connection ``user``'s (the ``auth`` message)."""
        connection.user = user
        connection.token_expires_at = token_expires_at
        self._by_user.setdefault(user.id, set()).add(connection)

    def disconnect(self, connection: Connection) -> None:
        self.connections.discard(connection)
        if connection.user_id is not None:
            users = self._by_user.get(connection.user_id)
            if users is not None:
                users.discard(connection)
                if not users:
                    del self._by_user[connection.user_id]
        for subscription in list(connection.queries.values()):
            self._unfollow(connection, subscription)
        connection.queries.clear()
        for channel in list(connection.channels):
            self._leave(connection, channel)
        connection.close(1000, "closed")

    def error(self, connection: Connection, code: str, **context: Any) -> dict[str, Any]:
        """The error message for ``code`` in the connection's locale."""
        params = {key: value for key, value in context.items() if key not in ("channel", "query")}
        text = self.catalog.render(code, connection.locale, params)
        message: dict[str, Any] = {"type": "error", "code": code, "message": text.detail}
        message.update({key: value for key, value in context.items() if value is not None})
        return message

    # -- client messages ----------------------------------------------------------------

    async def handle(self, connection: Connection, message: Mapping[str, Any]) -> None:
        """Act on one client message (already parsed as a JSON object)."""
        kind = message.get("type")
        if kind == "ping":
            connection.push({"type": "pong"})
        elif kind == "subscribe" and isinstance(message.get("channel"), str):
            self.subscribe_channel(connection, message["channel"])
        elif kind == "subscribe" and isinstance(message.get("query"), str):
            await self.subscribe_query(connection, message["query"], message.get("args") or {})
        elif kind == "unsubscribe" and isinstance(message.get("channel"), str):
            self._leave(connection, message["channel"])
            connection.push({"type": "unsubscribed", "channel": message["channel"]})
        elif kind == "unsubscribe" and isinstance(message.get("query"), str):
            self.unsubscribe_query(connection, message["query"], message.get("args") or {})
        else:
            connection.push(
                self.error(connection, "bad_request", detail="unknown message", received=kind)
            )

    def subscribe_channel(self, connection: Connection, name: str) -> None:
        spec = self.declarations.channels.get(name)
        if spec is None:
            connection.push(self.error(connection, "not_found", channel=name))
            return
        refusal = self._refusal(connection, spec.permissions, needs_user=spec.per_user)
        if refusal is not None:
            connection.push(self.error(connection, refusal, channel=name))
            return
        if name not in connection.channels and self._full(connection):
            connection.push(
                self.error(
                    connection,
                    "too_many_subscriptions",
                    channel=name,
                    limit=self.settings.max_subscriptions,
                )
            )
            return
        connection.channels.add(name)
        self._members.setdefault(name, set()).add(connection)
        connection.push({"type": "subscribed", "channel": name})

    async def subscribe_query(self, connection: Connection, name: str, raw_args: Any) -> None:
        function = self.declarations.queries.get(name)
        spec = self.functions.get(function) if function is not None else None
        if spec is None:
            connection.push(self.error(connection, "not_found", query=name))
            return
        try:
            args = self._arguments(spec, raw_args)
        except ValidationError as invalid:
            fields = [
                {"field": ".".join(str(part) for part in error["loc"]), "message": error["msg"]}
                for error in invalid.errors(include_url=False, include_context=False)
            ]
            connection.push(
                {**self.error(connection, "validation_failed", query=name), "errors": fields}
            )
            return
        marker = (name, _canonical(args))
        if marker in connection.queries:
            existing = connection.queries[marker]
            connection.push({"type": "result", "query": name, "args": args, "data": existing.last})
            return
        if self._full(connection):
            connection.push(
                self.error(
                    connection,
                    "too_many_subscriptions",
                    query=name,
                    limit=self.settings.max_subscriptions,
                )
            )
            return
        key = "|".join((spec.name, _caller(connection), marker[1]))
        subscription = QuerySubscription(name=name, function=spec.name, args=args, key=key)
        seen = self._writes_seen
        try:
            data, tables = await self._run(spec, args, connection)
        except BastionError as failure:
            connection.push(self._failure(connection, failure, subscription))
            return
        if connection.closed.is_set():
            return
        subscription.last, subscription.tables = _canonical(data), tables
        connection.queries[marker] = subscription
        self._followers.setdefault(key, set()).add((connection, subscription))
        connection.push({"type": "result", "query": name, "args": args, "data": data})
        if self._writes_seen != seen:
            # A commit landed while the first result was computed: it may predate it.
            self._schedule(key)

    def unsubscribe_query(self, connection: Connection, name: str, raw_args: Any) -> None:
        marker = (name, _canonical(to_jsonable_python(raw_args)))
        subscription = connection.queries.pop(marker, None)
        if subscription is not None:
            self._unfollow(connection, subscription)
        connection.push({"type": "unsubscribed", "query": name, "args": raw_args})

    def recheck(self, connection: Connection) -> None:
        """Close a connection whose access token has expired (run at each heartbeat)."""
        if connection.expired():
            connection.close(
                CLOSE_SIGNED_OUT,
                "token_expired",
                error=self.error(connection, "token_expired"),
            )

    # -- bus messages -------------------------------------------------------------------

    def _on_event(self, message: Message) -> None:
        channel, user_id = str(message.data.get("c")), message.data.get("u")
        outgoing = {
            "type": "event",
            "channel": channel,
            "event": message.data.get("e"),
            "data": message.data.get("d"),
        }
        members: set[Connection] = self._members.get(channel, set())
        if user_id is not None:
            members = self._by_user.get(user_id, set()) & members
        text = encode(outgoing)
        for connection in list(members):
            connection.push_text(text)

    def _on_writes(self, message: Message) -> None:
        self._writes_seen += 1
        tables = set(message.data.get("tables", ()))
        for key, followers in list(self._followers.items()):
            # Followers of one key ran one query with one result: they read the same tables.
            _, subscription = next(iter(followers))
            if not tables.isdisjoint(subscription.tables):
                self._schedule(key)

    def _on_signout(self, message: Message) -> None:
        user_id, session_key = message.data.get("u"), message.data.get("s")
        for connection in list(self._by_user.get(str(user_id), ())):
            if session_key is None or connection.session_key == session_key:
                code = "not_authenticated" if session_key else "account_banned"
                connection.close(CLOSE_SIGNED_OUT, code, error=self.error(connection, code))

    def _rerun_all(self) -> None:
        for key in list(self._followers):
            self._schedule(key)

    # -- re-runs ------------------------------------------------------------------------

    def _schedule(self, key: str) -> None:
        if key in self._running:
            self._again.add(key)  # runs once more after the current run
            return
        task = asyncio.get_running_loop().create_task(self._rerun(key))
        self._running[key] = task

    async def _rerun(self, key: str) -> None:
        try:
            while True:
                self._again.discard(key)
                followers = self._followers.get(key)
                if not followers:
                    return
                connection, subscription = next(iter(followers))
                spec = self.functions[subscription.function]
                try:
                    data, tables = await self._run(spec, subscription.args, connection)
                except BastionError as failure:
                    for follower, followed in list(self._followers.get(key, ())):
                        follower.push(self._failure(follower, failure, followed))
                else:
                    text = _canonical(data)
                    outgoing = encode(
                        {
                            "type": "result",
                            "query": subscription.name,
                            "args": subscription.args,
                            "data": data,
                        }
                    )
                    for follower, followed in list(self._followers.get(key, ())):
                        followed.tables = tables
                        if followed.last != text:
                            followed.last = text
                            follower.push_text(outgoing)
                if key not in self._again:
                    return
        except Exception:
            self.log.exception("realtime_rerun_failed", subscription=key)
        finally:
            self._running.pop(key, None)

    async def _run(
        self, spec: FunctionSpec, args: dict[str, Any], connection: Connection
    ) -> tuple[Any, frozenset[str]]:
        result, tables = await self.invoker.run_tracked(
            spec, args, user=connection.user, locale=connection.locale
        )
        if spec.output is not None:
            result = spec.output.dump_python(result, mode="json")
        return to_jsonable_python(result), tables

    # -- helpers ------------------------------------------------------------------------

    def _arguments(self, spec: FunctionSpec, raw: Any) -> dict[str, Any]:
        model = self._arg_models.get(spec.name)
        if model is None:
            fields: dict[str, Any] = {
                parameter.name: (
                    parameter.annotation,
                    ... if parameter.default is parameter.empty else parameter.default,
                )
                for parameter in spec.parameters
            }
            model = create_model(f"{spec.name}_arguments", **fields)
            self._arg_models[spec.name] = model
        validated = model.model_validate(raw if isinstance(raw, dict) else {"": raw})
        return dict(validated.model_dump(mode="json"))

    def _refusal(
        self, connection: Connection, permissions: frozenset[str], *, needs_user: bool
    ) -> str | None:
        user = connection.user
        if user is None and (needs_user or permissions):
            return "not_authenticated"
        if user is not None and not all(user.allows(p) for p in permissions):
            return "permission_denied"
        return None

    def _full(self, connection: Connection) -> bool:
        return connection.subscription_count >= self.settings.max_subscriptions

    def _failure(
        self, connection: Connection, failure: BastionError, subscription: QuerySubscription
    ) -> dict[str, Any]:
        code, params = failure.error_code, failure.params
        message = self.error(connection, code, query=subscription.name, **params)
        message["args"] = subscription.args
        return message

    def _leave(self, connection: Connection, channel: str) -> None:
        connection.channels.discard(channel)
        members = self._members.get(channel)
        if members is not None:
            members.discard(connection)
            if not members:
                del self._members[channel]

    def _unfollow(self, connection: Connection, subscription: QuerySubscription) -> None:
        followers = self._followers.get(subscription.key)
        if followers is not None:
            followers.discard((connection, subscription))
            if not followers:
                del self._followers[subscription.key]

    def stats(self) -> dict[str, int]:
        """Connections and subscriptions now (for metrics and the console, #6)."""
        return {
            "connections": len(self.connections),
            "users": len(self._by_user),
            "channels": len(self._members),
            "query_keys": len(self._followers),
            "rerunning": len(self._running),
        }


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _caller(connection: Connection) -> str:
    """Who a query runs as, as far as its result may tell: the user, what they may do
    (a narrowly scoped API key and a full session of one user differ) and the locale."""
    user = connection.user
    if user is None:
        return f"anonymous:{connection.locale}"
    return f"{user.id}:{','.join(sorted(user.permissions))}:{connection.locale}"
