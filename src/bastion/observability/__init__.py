"""Observability: structured logs and health checks (metrics and traces come in #6)."""

from __future__ import annotations

from bastion.observability.health import CheckResult, HealthCheck, HealthRegistry, health_document
from bastion.observability.logs import configure_logging, get_logger, scrub

__all__ = [
    "CheckResult",
    "HealthCheck",
    "HealthRegistry",
    "configure_logging",
    "get_logger",
    "health_document",
    "scrub",
]
