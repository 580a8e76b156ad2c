"""What the running app records about itself in its database: request statistics,
error groups and client logs (the console and alert rules read them)."""

from __future__ import annotations

from bastion.monitoring.client_logs import (
    ClientLog,
    ClientLogBatch,
    ClientLogEntry,
    purge_client_logs,
    recent_client_logs,
)
from bastion.monitoring.errors import (
    ErrorGroup,
    ErrorRecord,
    count_error_groups,
    error_groups,
    purge_error_log,
    recent_errors,
)
from bastion.monitoring.stats import (
    RequestStats,
    TrafficMinute,
    TrafficTotals,
    job_throughput,
    totals,
    traffic,
)
from bastion.monitoring.tables import ClientLogRow, RequestStatsRow

__all__ = [
    "ClientLog",
    "ClientLogBatch",
    "ClientLogEntry",
    "ClientLogRow",
    "ErrorGroup",
    "ErrorRecord",
    "RequestStats",
    "RequestStatsRow",
    "TrafficMinute",
    "TrafficTotals",
    "count_error_groups",
    "error_groups",
    "job_throughput",
    "purge_client_logs",
    "purge_error_log",
    "recent_client_logs",
    "recent_errors",
    "totals",
    "traffic",
]
