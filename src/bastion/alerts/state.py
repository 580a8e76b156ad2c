"""Each rule's state in ``bastion_alerts``, moved by conditional updates, and its history.

A rule is ``ok`` or ``firing``. Every move that notifies (``ok`` to ``firing``: *fired*;
still ``firing`` once the cooldown has passed: *repeated*; ``firing`` to ``ok``:
*resolved*) is an ``UPDATE ... WHERE`` on the state it leaves, with ``RETURNING``. When
two evaluations race, the database lets one update match and the other finds the row
already moved (PostgreSQL re-checks the condition after the first commits; SQLite runs
write transactions one at a time), so exactly one of them records the event and sends it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, Table, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bastion.alerts.measure import Reading
from bastion.alerts.tables import AlertEventRow, AlertStateRow
from bastion.db.database import Database
from bastion.settings.sections import AlertRule

EventKind = Literal["fired", "repeated", "resolved"]

STATES: Table = AlertStateRow.__table__  # type: ignore[assignment]
EVENTS: Table = AlertEventRow.__table__  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Claimed:
    """A move this evaluation won: its event row is written, its notification not yet."""

    event_id: int
    kind: EventKind
    message: str


def advance(
    database: Database, rule: AlertRule, reading: Reading, now: datetime, cooldown_s: float
) -> Claimed | None:
    """Record ``reading`` in the rule's state; the move to notify, if this call won one."""
    with database.transaction() as session:
        dialect = session.get_bind().dialect.name
        insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(STATES)
        session.execute(
            insert.values(
                rule=rule.name, state="ok", value=reading.value, since=now, evaluated_at=now
            ).on_conflict_do_nothing()
        )
        this_rule = STATES.c.rule == rule.name
        measured: dict[str, Any] = {"value": reading.value, "evaluated_at": now}
        kind: EventKind | None = None
        if reading.breached:
            if _moved(
                session,
                (this_rule, STATES.c.state == "ok"),
                {**measured, "state": "firing", "since": now, "last_notified_at": now},
            ):
                kind = "fired"
            elif _moved(
                session,
                (
                    this_rule,
                    STATES.c.state == "firing",
                    or_(
                        STATES.c.last_notified_at.is_(None),
                        STATES.c.last_notified_at <= now - timedelta(seconds=cooldown_s),
                    ),
                ),
                {**measured, "last_notified_at": now},
            ):
                kind = "repeated"
        elif _moved(
            session,
            (this_rule, STATES.c.state == "firing"),
            {**measured, "state": "ok", "since": now, "last_notified_at": now},
        ):
            kind = "resolved"
        if kind is None:
            session.execute(STATES.update().where(this_rule).values(**measured))
            return None
        message = reading.summary
        event_id = session.execute(
            EVENTS.insert()
            .values(
                rule=rule.name,
                kind=kind,
                value=reading.value,
                threshold=rule.threshold,
                message=message,
                created_at=now,
            )
            .returning(EVENTS.c.id)
        ).scalar_one()
        return Claimed(int(event_id), kind, message)


def _moved(
    session: Session, where: tuple[ColumnElement[bool], ...], values: dict[str, Any]
) -> bool:
    moved = session.execute(
        STATES.update().where(*where).values(**values).returning(STATES.c.rule)
    ).scalar_one_or_none()
    return moved is not None


def record_notified(database: Database, event_id: int, notified: dict[str, str]) -> None:
    with database.transaction() as session:
        session.execute(EVENTS.update().where(EVENTS.c.id == event_id).values(notified=notified))


def forget_unconfigured(database: Database, rules: list[str]) -> None:
    """Drop the state of rules no longer in the configuration (their history stays)."""
    with database.transaction() as session:
        session.execute(STATES.delete().where(STATES.c.rule.not_in(rules)))


def alert_states(session: Session) -> list[AlertStateRow]:
    """Every rule's current state, firing ones first, then by name."""
    return list(
        session.scalars(
            select(AlertStateRow).order_by(
                (AlertStateRow.state == "firing").desc(), AlertStateRow.rule
            )
        )
    )


def alert_history(
    session: Session, limit: int = 100, rule: str | None = None
) -> list[AlertEventRow]:
    """The latest events (fired, repeated, resolved), newest first; one rule's with ``rule``."""
    query = select(AlertEventRow).order_by(AlertEventRow.id.desc()).limit(limit)
    if rule is not None:
        query = query.where(AlertEventRow.rule == rule)
    return list(session.scalars(query))
