"""Alert rules from configuration, evaluated on a schedule, with notifications.

``app.use_alerts()`` declares the ``bastion.alerts`` cron job that runs :func:`evaluate`
and the ``GET /admin/alerts`` endpoint; see docs/howto/alerts.md.
"""

from __future__ import annotations

from bastion.alerts.evaluate import AlertEvent, evaluate
from bastion.alerts.state import alert_history, alert_states
from bastion.alerts.tables import AlertEventRow, AlertStateRow

__all__ = [
    "AlertEvent",
    "AlertEventRow",
    "AlertStateRow",
    "alert_history",
    "alert_states",
    "evaluate",
]
