"""Run a declared function: permissions, context, transaction, result validation.

Every driver (HTTP today; the worker and realtime later) calls :meth:`Invoker.invoke`,
so queries, mutations and actions share one path for errors and transactions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import anyio.to_thread
from opentelemetry.trace import NoOpTracer, Tracer
from sqlalchemy import exc as sa_exc

from bastion.auth.principal import Principal
from bastion.cache import QueryCacheBackend, cache_key
from bastion.context import Context
from bastion.db.database import Database, is_unavailable_error
from bastion.db.reads import record_reads
from bastion.errors import (
    BastionError,
    Conflict,
    NotAuthenticated,
    PermissionDenied,
    ServiceUnavailable,
)
from bastion.functions.registry import FunctionKind, FunctionSpec
from bastion.observability.logs import get_logger
from bastion.observability.tracing import record_failure
from bastion.settings.sections import Settings


class Invoker:
    """Runs functions against one database with one set of settings.

    Args:
        database: Where queries and mutations run.
        settings: Passed to every context.
        services: The runtime, reachable as ``ctx.services``.
        tracer: Starts a span per invocation (the runtime's; none by default).
    """

    def __init__(
        self,
        database: Database,
        settings: Settings,
        services: Any = None,
        cache: QueryCacheBackend | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.database = database
        self.tracer = tracer or NoOpTracer()
        self.settings = settings
        self.services = services
        self.cache = cache
        self._log = get_logger("bastion.functions")

    async def invoke(
        self,
        spec: FunctionSpec,
        args: Mapping[str, Any],
        *,
        user: Principal | None = None,
        locale: str = "en",
        request_id: str = "",
        session_data: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """Run ``spec`` with ``args``; returns the result validated as ``spec.response``.

        Raises:
            BastionError: for every failure a client may see (database errors mapped).
        """
        with self.tracer.start_as_current_span(
            spec.name,
            attributes={
                "bastion.function.name": spec.name,
                "bastion.function.kind": spec.kind.value,
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                return await self._invoke(
                    spec,
                    args,
                    user=user,
                    locale=locale,
                    request_id=request_id,
                    session_data=session_data,
                    idempotency_key=idempotency_key,
                )
            except Exception as error:
                if not _is_answer(error):
                    record_failure(span, error)
                raise

    async def _invoke(
        self,
        spec: FunctionSpec,
        args: Mapping[str, Any],
        *,
        user: Principal | None,
        locale: str,
        request_id: str,
        session_data: dict[str, Any] | None,
        idempotency_key: str | None,
    ) -> Any:
        authorize(spec, user)
        context = partial(
            self._context,
            spec,
            user=user,
            locale=locale,
            request_id=request_id,
            session_data=session_data,
            idempotency_key=idempotency_key,
        )

        if spec.kind is FunctionKind.ACTION:
            result = await spec.fn(context(None), **args)
            return _validate(spec, result)

        if spec.cache_ttl_s is not None and self.cache is not None:

            async def compute() -> tuple[Any, frozenset[str]]:
                return await anyio.to_thread.run_sync(self._run_tracking_reads, spec, args, context)

            key = cache_key(spec.name, args, user.id if user else None)
            return await self.cache.get_or_compute(
                key, spec.cache_ttl_s, compute, response=spec.output
            )

        return await anyio.to_thread.run_sync(self._run_in_transaction, spec, args, context)

    async def run_tracked(
        self,
        spec: FunctionSpec,
        args: Mapping[str, Any],
        *,
        user: Principal | None = None,
        locale: str = "en",
        request_id: str = "",
    ) -> tuple[Any, frozenset[str]]:
        """Run a query past the cache, returning its result and the tables it read (a
        realtime subscription runs it again when a commit writes one of them)."""
        if spec.kind is not FunctionKind.QUERY:
            raise TypeError(f"{spec.name} is a {spec.kind.value}; only queries can be followed")
        authorize(spec, user)
        context = partial(self._context, spec, user=user, locale=locale, request_id=request_id)
        return await anyio.to_thread.run_sync(self._run_tracking_reads, spec, args, context)

    def _context(
        self,
        spec: FunctionSpec,
        db: Any,
        *,
        user: Principal | None,
        locale: str,
        request_id: str,
        session_data: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Context:
        return Context(
            db=db,
            user=user,
            locale=locale,
            request_id=request_id,
            log=self._log.bind(function=spec.name),
            settings=self.settings,
            services=self.services,
            function=spec.name,
            session_data=session_data,
            idempotency_key=idempotency_key,
        )

    def _run_tracking_reads(
        self, spec: FunctionSpec, args: Mapping[str, Any], context: Callable[[Any], Context]
    ) -> tuple[Any, frozenset[str]]:
        # Always the primary: a commit invalidates the cache as soon as it is done, so a
        # replica still behind that commit would have the stale result stored again, to
        # be served until the TTL runs out.
        try:
            with self.database.read_transaction() as session:
                reads = record_reads(session)
                result = _validate(spec, spec.fn(context(session), **args))
                return result, frozenset(reads)
        except sa_exc.DBAPIError as error:
            raise database_error(error) from error

    def _run_in_transaction(
        self, spec: FunctionSpec, args: Mapping[str, Any], context: Callable[[Any], Context]
    ) -> Any:
        transaction = (
            self.database.read_transaction(replica=not spec.primary)
            if spec.kind is FunctionKind.QUERY
            else self.database.transaction()
        )
        try:
            with transaction as session:
                # Validating inside the transaction means an invalid result rolls a
                # mutation back instead of committing work the caller never sees.
                return _validate(spec, spec.fn(context(session), **args))
        except sa_exc.DBAPIError as error:
            raise database_error(error) from error


def authorize(spec: FunctionSpec, user: Principal | None) -> None:
    """Refuse the call unless ``user`` holds every permission ``spec`` declares."""
    if not spec.permissions:
        return
    if user is None:
        raise NotAuthenticated()
    if not all(user.allows(permission) for permission in spec.permissions):
        raise PermissionDenied()


def database_error(error: sa_exc.DBAPIError) -> BastionError | sa_exc.DBAPIError:
    """Map a driver error to the client-facing error it means, or return it unchanged."""
    if isinstance(error, sa_exc.IntegrityError):
        return Conflict()
    if is_unavailable_error(error):
        return ServiceUnavailable("database_unavailable", headers={"Retry-After": "1"})
    return error


def _is_answer(error: Exception) -> bool:
    """A client error (404, 409, 422...) is the function's answer, not a failed span."""
    if not isinstance(error, BastionError):
        return False
    status = error.status_override or type(error).status
    return status is not None and status < 500


def _validate(spec: FunctionSpec, result: Any) -> Any:
    if spec.output is None:
        return None
    return spec.output.validate_python(result, from_attributes=True)
