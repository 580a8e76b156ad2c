"""Alert rules from configuration, evaluated on a schedule, with notifications."""

from __future__ import annotations

from bastion.alerts.tables import AlertEventRow, AlertStateRow

__all__ = ["AlertEventRow", "AlertStateRow"]
