"""One evaluation of every configured rule: measure, move the state, notify, record."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread
from croniter import croniter

from bastion.alerts.measure import AlertServices, measure
from bastion.alerts.notify import notify
from bastion.alerts.state import EventKind, advance, forget_unconfigured, record_notified
from bastion.context import Context
from bastion.observability.logs import get_logger

log = get_logger("bastion.alerts")


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """A notification this evaluation sent (its row is in ``bastion_alert_events``)."""

    id: int
    rule: str
    kind: EventKind
    value: float | None
    message: str
    notified: dict[str, str]


async def evaluate(services: AlertServices, now: datetime | None = None) -> list[AlertEvent]:
    """Evaluate every ``[[alerts.rules]]`` entry as of ``now``; returns what was notified.

    A rule whose measurement fails (its source unreachable) is logged and left as it
    was; the others go on.
    """
    now = now or datetime.now(UTC)
    section = services.settings.alerts
    database = services.database
    await anyio.to_thread.run_sync(
        forget_unconfigured, database, [rule.name for rule in section.rules]
    )
    events: list[AlertEvent] = []
    for rule in section.rules:
        try:
            reading = await measure(services, rule, now)
        except Exception as exc:  # one unreadable source must not stop the other rules
            log.warning(
                "alert_rule_unmeasured", rule=rule.name, error=f"{type(exc).__name__}: {exc}"
            )
            continue
        claimed = await anyio.to_thread.run_sync(
            advance, database, rule, reading, now, section.cooldown_s
        )
        if claimed is None:
            continue
        notified = await notify(services, rule, claimed, now)
        await anyio.to_thread.run_sync(record_notified, database, claimed.event_id, notified)
        events.append(
            AlertEvent(
                claimed.event_id, rule.name, claimed.kind, reading.value, claimed.message, notified
            )
        )
    return events


def alerts_job(schedule: str | None) -> Callable[[Context], Awaitable[dict[str, int]]]:
    """The body of the ``bastion.alerts`` cron job (see ``App.use_alerts``).

    With no ``schedule`` of its own the job is declared every minute, and evaluates in
    the minutes ``[alerts] schedule`` names.
    """

    async def alerts(ctx: Context) -> dict[str, int]:
        services: Any = ctx.services
        section = services.settings.alerts
        now = datetime.now(UTC)
        due = schedule is not None or croniter.match(section.schedule, now.replace(second=0))
        if not (section.enabled and due):
            return {"rules": 0, "events": 0}
        events = await evaluate(services, now)
        return {"rules": len(section.rules), "events": len(events)}

    return alerts
