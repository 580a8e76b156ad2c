"""Cursor (keyset) and offset pagination, with the response envelopes of shop-api.md.

Cursors are opaque to clients and tamper-evident: the sort-key values of the last
row, plus a fingerprint of the listing they belong to, signed with HMAC-SHA256
under the app's secret. A cursor that was edited, or that belongs to another sort
or filter, is refused with a ``validation_failed`` error on the ``cursor`` field.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from bastion.errors import FieldError, ValidationFailed

T = TypeVar("T")

_SIGNATURE_BYTES = 16


class CursorPagination(BaseModel):
    limit: int
    next_cursor: str | None
    has_more: bool


class CursorPage(BaseModel, Generic[T]):
    """``{"data": [...], "pagination": {"limit", "next_cursor", "has_more"}}``."""

    data: list[T]
    pagination: CursorPagination


class OffsetPagination(BaseModel):
    page: int
    limit: int
    total: int
    total_pages: int


class OffsetPage(BaseModel, Generic[T]):
    """``{"data": [...], "pagination": {"page", "limit", "total", "total_pages"}}``."""

    data: list[T]
    pagination: OffsetPagination


@dataclass(frozen=True, slots=True)
class PageResult(Generic[T]):
    """Rows of one page with its pagination; validates into CursorPage/OffsetPage."""

    data: list[T]
    pagination: CursorPagination | OffsetPagination


@dataclass(frozen=True, slots=True)
class SortKey:
    """One column of a keyset ordering. The last key of an ordering must be unique (an id)."""

    column: ColumnElement[Any]
    attr: str
    descending: bool = False


class CursorCodec:
    """Signs and verifies cursors.

    Args:
        secret: The app's secret key.
    """

    def __init__(self, secret: str | bytes) -> None:
        raw = secret.encode() if isinstance(secret, str) else secret
        self._key = hashlib.sha256(b"bastion.cursor:" + raw).digest()

    def encode(self, scope: str, values: Sequence[Any]) -> str:
        payload = json.dumps(
            [scope, [_jsonable(v) for v in values]], separators=(",", ":")
        ).encode()
        signature = hmac.new(self._key, payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]
        return base64.urlsafe_b64encode(signature + payload).rstrip(b"=").decode()

    def decode(self, cursor: str, scope: str) -> list[Any]:
        """Return the sort-key values of a cursor issued for ``scope``.

        Raises:
            ValidationFailed: the cursor is malformed, tampered with, or from another listing.
        """
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            # Only the canonical encoding is accepted: the decoder ignores unused low
            # bits of the last character, which would let edited cursors through.
            if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != cursor:
                raise ValueError("not canonical")
            signature, payload = raw[:_SIGNATURE_BYTES], raw[_SIGNATURE_BYTES:]
            expected = hmac.new(self._key, payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]
            if len(cursor) > 2048 or not hmac.compare_digest(signature, expected):
                raise ValueError("bad signature")
            issued_scope, values = json.loads(payload)
            if issued_scope != scope or not isinstance(values, list):
                raise ValueError("other listing")
        except (ValueError, TypeError):
            raise invalid_cursor() from None
        return values


def invalid_cursor() -> ValidationFailed:
    return ValidationFailed(errors=[FieldError("cursor", "invalid_cursor")])


def listing_scope(name: str, **params: Any) -> str:
    """A short fingerprint of a listing (its name, sort and filters) for cursor scoping."""
    canonical = json.dumps(
        [name, sorted((k, _jsonable(v)) for k, v in params.items())], default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def paginate_cursor(
    session: Session,
    statement: Select[Any],
    *,
    keys: Sequence[SortKey],
    limit: int,
    cursor: str | None,
    codec: CursorCodec,
    scope: str,
) -> PageResult[Any]:
    """Fetch one keyset page of ``statement`` (which must select one entity).

    Every row appears exactly once across pages, whatever the ordering, as long as
    the last key is unique and sort-key values are not NULL.
    """
    if not keys:
        raise ValueError("paginate_cursor needs at least one sort key")
    if cursor:
        values = codec.decode(cursor, scope)
        if len(values) != len(keys):
            raise invalid_cursor()
        statement = statement.where(
            _after(keys, [_restore(v, k) for v, k in zip(values, keys, strict=True)])
        )
    ordering = [k.column.desc() if k.descending else k.column.asc() for k in keys]
    rows = list(session.scalars(statement.order_by(*ordering).limit(limit + 1)))
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if has_more and rows:
        last = rows[-1]
        next_cursor = codec.encode(scope, [getattr(last, k.attr) for k in keys])
    return PageResult(
        rows, CursorPagination(limit=limit, next_cursor=next_cursor, has_more=has_more)
    )


def paginate_offset(
    session: Session, statement: Select[Any], *, page: int, limit: int
) -> PageResult[Any]:
    """Fetch page ``page`` (from 1) of an ordered ``statement`` with the total count."""
    total = (
        session.scalar(select(func.count()).select_from(statement.order_by(None).subquery())) or 0
    )
    rows = list(session.scalars(statement.limit(limit).offset((page - 1) * limit)))
    pages = math.ceil(total / limit) if total else 0
    return PageResult(
        rows, OffsetPagination(page=page, limit=limit, total=total, total_pages=pages)
    )


def _after(keys: Sequence[SortKey], values: Sequence[Any]) -> ColumnElement[bool]:
    # (k1 > v1) OR (k1 = v1 AND k2 > v2) OR ..., with < for descending keys: a row
    # comparison that also works when the keys sort in different directions.
    clauses = []
    for i, key in enumerate(keys):
        equal = [keys[j].column == values[j] for j in range(i)]
        beyond = key.column < values[i] if key.descending else key.column > values[i]
        clauses.append(and_(*equal, beyond))
    return or_(*clauses)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    return value


def _restore(value: Any, key: SortKey) -> Any:
    if isinstance(value, dict) and "$dt" in value:
        return datetime.fromisoformat(value["$dt"])
    if isinstance(value, dict | list):
        raise invalid_cursor()
    return value
