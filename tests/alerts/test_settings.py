"""A bad ``[alerts]`` section is refused when the settings load, naming the problem."""

from __future__ import annotations

from typing import Any

import pytest

from bastion import SettingsError, load_settings

GOOD = {"name": "errors", "kind": "error_rate", "threshold": 0.05}


def load(alerts: dict[str, Any]) -> Any:
    return load_settings(None, environ={}, overrides={"alerts": alerts}).alerts


def test_rules_load_with_their_defaults() -> None:
    section = load({"rules": [GOOD, {"name": "dead", "kind": "dead_jobs", "threshold": 0}]})
    assert section.enabled
    assert (section.schedule, section.cooldown_s) == ("* * * * *", 3600)
    rule = section.rules[0]
    assert (rule.window_s, rule.min_requests, rule.route, rule.channels) == (300, 20, None, None)


@pytest.mark.parametrize(
    ("alerts", "problem"),
    [
        ({"rules": [{**GOOD, "kind": "disk_full"}]}, "rules.0.kind"),
        ({"rules": [{"name": "errors", "kind": "error_rate"}]}, "rules.0.threshold"),
        ({"rules": [GOOD, {**GOOD, "threshold": 0.1}]}, "errors repeated"),
        ({"rules": [{**GOOD, "threshold": 5}]}, "a share, 0 to 1"),
        ({"rules": [{**GOOD, "kind": "dead_jobs", "route": "/x"}]}, "route applies to"),
        ({"rules": [{**GOOD, "channels": ["pager"]}]}, "rules.0.channels"),
        ({"rules": [{**GOOD, "name": "two words"}]}, "rules.0.name"),
        ({"rules": [{**GOOD, "window_s": 5}]}, "rules.0.window_s"),
        ({"schedule": "every minute"}, "not a five-field cron expression"),
        ({"webhook_urls": ["hooks.slack.com/x"]}, "http or https URL"),
        ({"email_to": ["ops"]}, "not an email address"),
    ],
)
def test_a_bad_alerts_section_is_a_settings_error(alerts: dict[str, Any], problem: str) -> None:
    with pytest.raises(SettingsError) as error:
        load(alerts)
    assert problem in str(error.value)
    assert "alerts" in str(error.value)
