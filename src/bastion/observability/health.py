"""Health checks: each runs under its own time limit; readiness sums them up.

Services register their checks here (the database first); this module imports none
of them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import anyio

HealthStatus = Literal["healthy", "degraded", "unhealthy"]
CheckFunction = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """A named readiness check: an async callable that raises when unhealthy.

    Attributes:
        critical: When a critical check fails the service is ``unhealthy`` (503);
            otherwise it is ``degraded`` (200).
    """

    name: str
    check: CheckFunction
    timeout_s: float
    critical: bool = True


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    healthy: bool
    latency_ms: float
    error: str | None


@dataclass
class HealthRegistry:
    """Holds the readiness checks of one runtime.

    Example::

        async def gateway() -> None:
            (await client.get("/health")).raise_for_status()

        runtime.health.add("payment_gateway", gateway, timeout_s=2.0, critical=False)
    """

    default_timeout_s: float = 2.0
    expose_errors: bool = False
    """Show failing checks' exception messages; otherwise only their type (hosts stay private)."""
    checks: list[HealthCheck] = field(default_factory=list)

    def add(
        self,
        name: str,
        check: CheckFunction,
        *,
        timeout_s: float | None = None,
        critical: bool = True,
    ) -> None:
        if any(existing.name == name for existing in self.checks):
            raise ValueError(f"health check {name!r} is already registered")
        limit = self.default_timeout_s if timeout_s is None else timeout_s
        if limit <= 0:
            raise ValueError("a health check needs a positive timeout")
        self.checks.append(HealthCheck(name, check, limit, critical))

    async def run(self) -> tuple[HealthStatus, list[CheckResult]]:
        results: list[CheckResult | None] = [None] * len(self.checks)

        async def run_one(index: int, check: HealthCheck) -> None:
            started = time.perf_counter()
            error: str | None = None
            try:
                with anyio.fail_after(check.timeout_s):
                    await check.check()
            except TimeoutError:
                error = f"timed out after {check.timeout_s:g}s"
            except Exception as exc:  # a failing check is a result, not a crash
                error = (
                    f"{type(exc).__name__}: {exc}"[:300]
                    if self.expose_errors
                    else type(exc).__name__
                )
            latency = round((time.perf_counter() - started) * 1000, 2)
            results[index] = CheckResult(check.name, error is None, latency, error)

        async with anyio.create_task_group() as group:
            for index, check in enumerate(self.checks):
                group.start_soon(run_one, index, check)
        done = [r for r in results if r is not None]
        status: HealthStatus = "healthy"
        for check, result in zip(self.checks, done, strict=True):
            if not result.healthy:
                status = (
                    "unhealthy"
                    if check.critical
                    else ("degraded" if status == "healthy" else status)
                )
        return status, done


def health_document(
    status: HealthStatus, results: list[CheckResult], version: str
) -> dict[str, Any]:
    return {
        "status": status,
        "checks": [
            {"name": r.name, "healthy": r.healthy, "latency_ms": r.latency_ms, "error": r.error}
            for r in results
        ],
        "version": version,
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
