"""Idempotency records: one row per caller and key, claimed before a request runs.

A request claims its key by INSERTing an ``in_progress`` row; the unique
``(scope, key)`` constraint lets only one of many concurrent duplicates win, on
SQLite (whose writers queue on ``BEGIN IMMEDIATE``) and on PostgreSQL (where a
second INSERT waits for the first transaction and then fails) alike. Losers read
the winner's row under ``FOR UPDATE`` and are told to replay, wait or stop.

``locked_until`` is the claim's lease and also its fencing token: a takeover
always moves it later, so a request whose lease was taken over cannot complete
or delete the record of the one that took it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import (
    JSON,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.sql import ColumnElement

from bastion.db.database import Database
from bastion.db.tables import PlatformBase
from bastion.db.types import UTCDateTime
from bastion.settings.sections import IdempotencySection

#: Claims tried before giving up as "in progress": a row can vanish between a failed
#: INSERT and the read that follows it (its request failed, or it was purged).
_CLAIM_ATTEMPTS = 3


class State(StrEnum):
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"


class IdempotencyRecord(PlatformBase):
    """A key's claim and, once the request finished, its stored response."""

    __tablename__ = "bastion_idempotency_keys"
    __table_args__ = (UniqueConstraint("scope", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(String(128))
    """Whose key it is: ``user:<principal id>`` or ``ip:<client address>``."""
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[int | None] = mapped_column(Integer)
    headers: Mapped[list[list[str]] | None] = mapped_column(JSON)
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    locked_until: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status_code: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True, slots=True)
class Proceed:
    """The key is this request's: run it, then :meth:`~IdempotencyStore.complete` or
    :meth:`~IdempotencyStore.abandon` with ``lease``."""

    lease: datetime


@dataclass(frozen=True, slots=True)
class Replay:
    """The same request already finished: answer with its response."""

    response: StoredResponse


@dataclass(frozen=True, slots=True)
class Reused:
    """The key was used for a different request."""


@dataclass(frozen=True, slots=True)
class InProgress:
    """The same request is still running elsewhere."""


Begin = Proceed | Replay | Reused | InProgress


class IdempotencyStore:
    """Claims, completes and purges idempotency records in the app's database.

    The methods are synchronous (call them through ``anyio.to_thread``); each runs
    in one short write transaction of its own, never inside the request's.

    Args:
        database: Where the records live (``bastion_idempotency_keys``).
        settings: How long keys are kept and how long a claim is leased.
    """

    def __init__(self, database: Database, settings: IdempotencySection | None = None) -> None:
        self.database = database
        self.settings = settings or IdempotencySection()

    def begin(self, scope: str, key: str, fingerprint: str, now: datetime) -> Begin:
        """Claim ``key`` for a request with ``fingerprint``, or say why it may not run."""
        with self.database.transaction() as session:
            for _ in range(_CLAIM_ATTEMPTS):
                lease = now + timedelta(seconds=self.settings.lock_s)
                if self._insert(session, scope, key, fingerprint, now, lease):
                    return Proceed(lease)
                record = session.scalars(
                    select(IdempotencyRecord)
                    .where(IdempotencyRecord.scope == scope, IdempotencyRecord.key == key)
                    .with_for_update()
                ).one_or_none()
                if record is not None:
                    return self._decide(record, fingerprint, now, lease)
        return InProgress()

    def _insert(
        self,
        session: Session,
        scope: str,
        key: str,
        fingerprint: str,
        now: datetime,
        lease: datetime,
    ) -> bool:
        try:
            with session.begin_nested():
                session.execute(
                    insert(IdempotencyRecord).values(
                        scope=scope,
                        key=key,
                        fingerprint=fingerprint,
                        state=State.IN_PROGRESS,
                        created_at=now,
                        locked_until=lease,
                        expires_at=now + timedelta(seconds=self.settings.ttl_s),
                    )
                )
        except IntegrityError:
            return False
        return True

    def _decide(
        self, record: IdempotencyRecord, fingerprint: str, now: datetime, lease: datetime
    ) -> Begin:
        if record.expires_at > now:
            if record.fingerprint != fingerprint:
                return Reused()
            if record.state == State.COMPLETED:
                return Replay(_stored(record))
            if record.locked_until > now:
                return InProgress()
        # Expired, or its request crashed without finishing: the key starts afresh.
        record.fingerprint = fingerprint
        record.state = State.IN_PROGRESS
        record.status_code = None
        record.headers = None
        record.body = None
        record.created_at = now
        record.locked_until = lease
        record.expires_at = now + timedelta(seconds=self.settings.ttl_s)
        return Proceed(lease)

    def complete(self, scope: str, key: str, lease: datetime, response: StoredResponse) -> bool:
        """Store the response of the claim ``lease``; False if the claim was taken over."""
        with self.database.transaction() as session:
            result = session.execute(
                update(IdempotencyRecord)
                .where(*_claimed(scope, key, lease))
                .values(
                    state=State.COMPLETED,
                    status_code=response.status_code,
                    headers=[list(pair) for pair in response.headers],
                    body=response.body,
                )
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def abandon(self, scope: str, key: str, lease: datetime) -> None:
        """Forget the claim ``lease`` (its request failed), so that a retry runs again."""
        with self.database.transaction() as session:
            session.execute(delete(IdempotencyRecord).where(*_claimed(scope, key, lease)))

    def purge_expired(self, now: datetime) -> int:
        """Delete every record that expired by ``now``; returns how many."""
        with self.database.transaction() as session:
            result = session.execute(
                delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= now)
            )
            return int(result.rowcount)  # type: ignore[attr-defined]


def _stored(record: IdempotencyRecord) -> StoredResponse:
    assert record.status_code is not None, "a completed record has a status"
    assert record.body is not None, "a completed record has a body"
    return StoredResponse(
        status_code=record.status_code,
        headers=tuple((name, value) for name, value in record.headers or ()),
        body=record.body,
    )


def _claimed(scope: str, key: str, lease: datetime) -> tuple[ColumnElement[bool], ...]:
    return (
        IdempotencyRecord.scope == scope,
        IdempotencyRecord.key == key,
        IdempotencyRecord.state == State.IN_PROGRESS,
        IdempotencyRecord.locked_until == lease,
    )
