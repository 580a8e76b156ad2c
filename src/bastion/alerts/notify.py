"""Telling people: a log line always, Slack-compatible webhooks and email when configured.

A channel that fails is reported in the event's ``notified`` (``"error: ..."``), never
raised: the state has already moved, and one broken channel must not silence the others.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from bastion.alerts.measure import AlertServices
from bastion.alerts.state import Claimed
from bastion.errors import BastionError
from bastion.mail import MailError
from bastion.observability.logs import get_logger
from bastion.settings.sections import AlertRule

log = get_logger("bastion.alerts")

_TITLES = {"fired": "FIRING", "repeated": "STILL FIRING", "resolved": "RESOLVED"}
_EMOJI = {
    "fired": ":rotating_light:",
    "repeated": ":rotating_light:",
    "resolved": ":white_check_mark:",
}


def slack_payload(
    app: str, env: str, rule: AlertRule, event: Claimed, now: datetime
) -> dict[str, Any]:
    """The JSON a Slack incoming webhook (or anything speaking its format) is sent."""
    title = f"[{app}] {_TITLES[event.kind]}: {rule.name}"
    return {
        "text": f"{_EMOJI[event.kind]} {title}: {event.message}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": event.message[:3000]}},
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"{rule.kind} > {rule.threshold:g} · {env} · "
                        f"{now.isoformat(timespec='seconds')}",
                    }
                ],
            },
        ],
    }


async def notify(
    services: AlertServices, rule: AlertRule, event: Claimed, now: datetime
) -> dict[str, str]:
    """Send ``event`` on every channel of ``rule``; returns each channel's outcome."""
    section = services.settings.alerts
    app = services.app.name
    fields = {"rule": rule.name, "rule_kind": rule.kind, "alert": event.message}
    if event.kind == "resolved":
        log.info("alert_resolved", **fields)
    else:
        log.warning(f"alert_{event.kind}", **fields)
    notified = {"log": "ok"}
    channels = set(rule.channels) if rule.channels is not None else {"webhook", "email"}
    if "webhook" in channels and section.webhook_urls:
        payload = slack_payload(app, services.settings.env, rule, event, now)
        for position, url in enumerate(section.webhook_urls, start=1):
            notified[f"webhook:{position}"] = await _post(services, url, payload)
    if "email" in channels and section.email_to:
        notified["email"] = await _mail(services, app, rule, event, now)
    return notified


async def _post(services: AlertServices, url: str, payload: dict[str, Any]) -> str:
    # One breaker per receiving host: a dead Slack must not open the breaker of another.
    dependency = f"alerts:{urlsplit(url).hostname}"
    try:
        response = await services.http.post(dependency, url, json=payload)
    except Exception as exc:  # any failure is the channel's outcome, not the evaluation's
        return _error(exc)
    await response.aclose()
    if not response.is_success:
        return f"error: HTTP {response.status_code}"
    return "ok"


async def _mail(
    services: AlertServices, app: str, rule: AlertRule, event: Claimed, now: datetime
) -> str:
    subject = f"[{app}] {_TITLES[event.kind]}: {rule.name}"
    text = (
        f"{event.message}\n\n"
        f"Rule: {rule.name} ({rule.kind} > {rule.threshold:g})\n"
        f"Environment: {services.settings.env}\n"
        f"At: {now.isoformat(timespec='seconds')}\n"
    )
    try:
        await services.mail.send(services.settings.alerts.email_to, subject, text)
    except Exception as exc:  # any failure is the channel's outcome, not the evaluation's
        return _error(exc)
    return "ok"


def _error(exc: Exception) -> str:
    if isinstance(exc, MailError):
        return f"error: {exc}"[:300]  # the reason, with the server's reply if any
    if isinstance(exc, BastionError):
        # upstream_failed (a 5xx or no connection), upstream_timeout, service_unavailable
        # (the breaker is open); the integrations log line has the details.
        return f"error: {exc.error_code}"
    detail = str(exc)
    return f"error: {type(exc).__name__}{f': {detail}' if detail else ''}"[:300]
