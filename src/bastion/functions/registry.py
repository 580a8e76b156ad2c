"""Function declarations: what a query, mutation or action is, before anything runs."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from limits import RateLimitItem
from pydantic import TypeAdapter

from bastion.cache import parse_ttl
from bastion.ratelimit import parse_limits


class FunctionKind(StrEnum):
    QUERY = "query"  #: read-only transaction, served on GET
    MUTATION = "mutation"  #: one read-write transaction, all or nothing
    ACTION = "action"  #: no transaction; talks to the outside world


_DEFAULT_METHOD = {
    FunctionKind.QUERY: "GET",
    FunctionKind.MUTATION: "POST",
    FunctionKind.ACTION: "POST",
}
_ALLOWED_METHODS = {
    FunctionKind.QUERY: {"GET"},
    FunctionKind.MUTATION: {"POST", "PUT", "PATCH", "DELETE"},
    FunctionKind.ACTION: {"GET", "POST", "PUT", "PATCH", "DELETE"},
}


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """A declared function and how it is served.

    Attributes:
        parameters: The function's parameters after ``ctx``, annotations resolved.
        response: The type the result is validated and serialized as (``None`` for no body).
        permissions: Every one is required (``write:all``...).
        cache_control: Sent on successful GET responses.
        etag: Send ``ETag`` and answer ``If-None-Match`` with 304 (GET only).
        idempotency_required: Refuse calls without an ``Idempotency-Key`` (400).
        cache_ttl_s: A query's results are cached this long per arguments and caller, and
            dropped sooner by any commit that writes a table the query read.
        rate_limit: Calls allowed per caller (user, else client address) on top of the
            request limits; empty for none.
        primary: A query reads from the primary even when read replicas are configured
            (it must see the caller's own latest writes).
    """

    name: str
    kind: FunctionKind
    fn: Callable[..., Any]
    path: str
    method: str
    status_code: int
    parameters: tuple[inspect.Parameter, ...]
    response: Any
    output: TypeAdapter[Any] | None
    permissions: frozenset[str] = frozenset()
    summary: str | None = None
    description: str | None = None
    tags: tuple[str, ...] = ()
    cache_control: str | None = None
    etag: bool = False
    idempotency_required: bool = False
    rate_limit: tuple[RateLimitItem, ...] = ()
    cache_ttl_s: float | None = None
    primary: bool = False


def declare(
    kind: FunctionKind,
    fn: Callable[..., Any],
    *,
    path: str,
    method: str | None,
    status_code: int | None,
    response: Any,
    permissions: Iterable[str],
    name: str | None,
    tags: Iterable[str],
    cache_control: str | None,
    etag: bool | None,
    idempotency_required: bool = False,
    rate_limit: str | None = None,
    cache: str | float | timedelta | None = None,
    primary: bool = False,
) -> FunctionSpec:
    """Check a function's shape and describe it; raises TypeError with a clear message."""
    is_async = inspect.iscoroutinefunction(fn)
    label = f"{kind.value} {fn.__qualname__}"
    if kind is FunctionKind.ACTION and not is_async:
        raise TypeError(f"{label} must be 'async def': actions wait on the network")
    if kind is not FunctionKind.ACTION and is_async:
        raise TypeError(
            f"{label} must be a plain 'def': queries and mutations run on a worker thread "
            "with a synchronous session (see docs/decisions/0002-sync-data-functions.md)"
        )
    chosen = (method or _DEFAULT_METHOD[kind]).upper()
    if chosen not in _ALLOWED_METHODS[kind]:
        raise TypeError(
            f"{label} cannot be served with {chosen}; use one of {sorted(_ALLOWED_METHODS[kind])}"
        )
    if not path.startswith("/"):
        raise ValueError(f"{label}: path must start with '/', got {path!r}")
    if idempotency_required and chosen == "GET":
        raise TypeError(f"{label}: an Idempotency-Key is for unsafe methods; GET is safe to retry")
    try:
        limits = parse_limits([rate_limit]) if rate_limit else ()
    except ValueError:
        raise ValueError(
            f"{label}: rate_limit {rate_limit!r} is not a limit like '10/minute'"
        ) from None

    if cache is not None and kind is not FunctionKind.QUERY:
        raise TypeError(f"{label}: only queries can be cached; their results change by commits")
    try:
        cache_ttl_s = parse_ttl(cache) if cache is not None else None
    except ValueError as error:
        raise ValueError(f"{label}: {error}") from None

    hints = typing.get_type_hints(fn, include_extras=True)
    signature = inspect.signature(fn)
    params = list(signature.parameters.values())
    if not params:
        raise TypeError(f"{label} must take the context as its first parameter")
    resolved = tuple(p.replace(annotation=hints.get(p.name, p.annotation)) for p in params[1:])
    if response is None:
        response = hints.get("return", None)
    if response is type(None):
        response = None
    if status_code is None:
        if response is None:
            status_code = 204
        else:
            status_code = 201 if chosen == "POST" and kind is FunctionKind.MUTATION else 200
    doc = inspect.getdoc(fn) or ""
    summary, _, description = doc.partition("\n\n")
    return FunctionSpec(
        name=name or fn.__name__,
        kind=kind,
        fn=fn,
        path=path,
        method=chosen,
        status_code=status_code,
        parameters=resolved,
        response=response,
        output=TypeAdapter(response) if response is not None else None,
        permissions=frozenset(permissions),
        summary=summary.strip() or None,
        description=description.strip() or None,
        tags=tuple(tags),
        cache_control=cache_control,
        etag=chosen == "GET" if etag is None else etag,
        idempotency_required=idempotency_required,
        rate_limit=limits,
        cache_ttl_s=cache_ttl_s,
        primary=primary,
    )
