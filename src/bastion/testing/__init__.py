"""Test kit: fixtures (pytest plugin), an in-process client, a live server, a clock,
and a worker to drive jobs and workflows."""

from __future__ import annotations

from bastion.testing.client import BastionClient, IdentityInjector, free_port, live_server
from bastion.testing.clock import Clock
from bastion.testing.databases import (
    DatabaseFactory,
    migrate,
    postgres_unavailable_reason,
    redis_unavailable_reason,
    selected_backend,
)
from bastion.testing.jobs import (
    job_is,
    job_row,
    run_worker_until,
    workflow_is,
    workflow_timeline,
)
from bastion.testing.plugin import RuntimeFactory, in_ci, require_service
from bastion.testing.realtime import RealtimeClient

__all__ = [
    "BastionClient",
    "Clock",
    "DatabaseFactory",
    "IdentityInjector",
    "RealtimeClient",
    "RuntimeFactory",
    "free_port",
    "in_ci",
    "job_is",
    "job_row",
    "live_server",
    "migrate",
    "postgres_unavailable_reason",
    "redis_unavailable_reason",
    "require_service",
    "run_worker_until",
    "selected_backend",
    "workflow_is",
    "workflow_timeline",
]
