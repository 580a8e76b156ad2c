"""What the running app records about itself in its database: request statistics,
error groups and client logs (the console and alert rules read them)."""

from __future__ import annotations

from bastion.monitoring.tables import ClientLogRow, RequestStatsRow

__all__ = ["ClientLogRow", "RequestStatsRow"]
