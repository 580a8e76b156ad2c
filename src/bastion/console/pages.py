"""The admin console at ``/console``: server-rendered pages over the runtime's services.

Every page but the login page needs the auth admin permission: anonymous visitors
are sent to the login page, signed-in users without it get a 403 page. Pages only
read; actions (retry, ban, redeliver, ...) are ``fetch`` POSTs from ``console.js`` to
the JSON admin API with the session's CSRF token, so the API's own checks, reasons
and audit records apply to them unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote

import anyio.to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.responses import Response

from bastion.alerts.state import alert_history, alert_states
from bastion.auth.principal import Principal
from bastion.auth.service import CSRF_KEY
from bastion.console.api import audit_query, users_query
from bastion.console.charts import Series, legend, line_chart
from bastion.console.rendering import asset_response, environment, html, load_assets, when
from bastion.db.database import Database
from bastion.http.state import require_permission, session_of, user_of
from bastion.jobs.store import JobStatus, JobStore
from bastion.monitoring.client_logs import recent_client_logs
from bastion.monitoring.errors import error_groups, recent_errors
from bastion.monitoring.stats import job_throughput, traffic
from bastion.observability.health import HealthRegistry
from bastion.observability.metrics import Metrics
from bastion.webhooks.tables import WebhookDeliveryRow, WebhookSubscriptionRow
from bastion.workflows import Workflows

ROWS = 100
JOB_STATUSES = tuple(status.value for status in JobStatus)
TERMINAL_JOB_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.DEAD, JobStatus.CANCELLED})


@dataclass(frozen=True, slots=True)
class ActionField:
    """An input of a :class:`UserAction` besides the reason, sent under ``name``."""

    name: str
    label: str
    kind: Literal["integer", "text"] = "text"


@dataclass(frozen=True, slots=True)
class UserAction:
    """An app's action on a user, offered on the console's users page.

    The console stays app-agnostic: it posts ``{"reason": ..., **fields}`` to
    ``path`` under the API prefix (``{id}`` is the user's id), and the app's endpoint
    checks, applies and audits it like any API call.
    """

    label: str
    path: str
    fields: tuple[ActionField, ...] = ()


@dataclass(frozen=True, slots=True)
class Nav:
    slug: str
    label: str


NAV = (
    Nav("", "Overview"),
    Nav("errors", "Live errors"),
    Nav("error-groups", "Error groups"),
    Nav("jobs", "Jobs"),
    Nav("workflows", "Workflows"),
    Nav("users", "Users"),
    Nav("audit", "Audit log"),
    Nav("webhooks", "Webhooks"),
    Nav("rate-limits", "Rate limits"),
    Nav("alerts", "Alerts"),
    Nav("health", "Health"),
)


def build_console_router(
    *,
    path: str,
    api_prefix: str,
    admin_permission: str,
    database: Database,
    jobs: JobStore,
    workflows: Workflows,
    health: HealthRegistry,
    metrics: Metrics,
    user_actions: Sequence[UserAction] = (),
) -> APIRouter:
    """The console's pages, mounted at ``path`` (kept out of the OpenAPI schema).

    Args:
        path: Where the console is served, e.g. ``/console``.
        api_prefix: The API's prefix: the login, admin and client-log endpoints the
            pages' script calls are under it.
        admin_permission: What a caller needs to see the console.
        metrics: The runtime's metrics: rate-limit hits are read from them.
        user_actions: The app's own actions on users (e.g. a credit adjustment).
    """
    router = APIRouter(include_in_schema=False)
    templates = environment()
    assets = load_assets()
    templates.globals.update(
        console=path,
        api_prefix=api_prefix,
        nav=NAV,
        asset=lambda name: f"{path}/static/{name}?v={assets[name].version}",
    )

    def render(
        request: Request, template: str, *, status_code: int = 200, **values: Any
    ) -> Response:
        record = session_of(request.scope)
        csrf = record.data.get(CSRF_KEY, "") if record is not None else ""
        user = user_of(request.scope)
        body = templates.get_template(template).render(csrf_token=csrf, user=user, **values)
        return html(body, status_code=status_code)

    def refusal(request: Request) -> Response | None:
        """Why the caller may not see an admin page, as the page to show instead."""
        user = user_of(request.scope)
        if user is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"{path}/login?next={quote(target, safe='')}", status_code=303)
        if not user.allows(admin_permission):
            return render(request, "refused.html", status_code=403, active=None)
        return None

    async def page(
        request: Request,
        template: str,
        active: str,
        build: Callable[[], dict[str, Any]],
        *,
        found: Callable[[dict[str, Any]], bool] = lambda _values: True,
    ) -> Response:
        """An admin page of what ``build`` reads (on a worker thread); 404 unless
        ``found(values)``."""
        if (refused := refusal(request)) is not None:
            return refused
        values = await anyio.to_thread.run_sync(build)
        status_code = 200 if found(values) else 404
        return render(request, template, status_code=status_code, active=active, **values)

    def reading(work: Callable[[Session], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
        """``work`` in one read-only transaction (a consistent snapshot of its queries)."""

        def run() -> dict[str, Any]:
            with database.read_transaction() as session:
                return work(session)

        return run

    def admin(request: Request) -> Principal:
        return require_permission(request.scope, admin_permission)

    @router.get("/static/{name}")
    async def static(request: Request, name: str) -> Response:
        asset = assets.get(name)
        if asset is None:
            return Response(status_code=404)
        return asset_response(request, asset)

    @router.get("/login")
    async def login(request: Request, after: str = Query("", alias="next")) -> Response:
        # Only back into the console: a login page must not redirect anywhere else.
        target = after if after.startswith(f"{path}/") or after == path else path
        return render(request, "login.html", active=None, next=target)

    @router.get("")
    async def overview(request: Request) -> Response:
        now = datetime.now(UTC)

        def build() -> dict[str, Any]:
            jobs_by_status: dict[str, int] = {}
            for (_queue, status), count in jobs.counts().items():
                jobs_by_status[status] = jobs_by_status.get(status, 0) + count
            return {**reading(lambda s: _charts(s, now))(), "jobs": jobs_by_status}

        return await page(request, "overview.html", "", build)

    @router.get("/errors")
    async def live_errors(request: Request) -> Response:
        def build(session: Session) -> dict[str, Any]:
            return {
                "server": recent_errors(session, limit=50),
                "client": recent_client_logs(session, limit=50),
            }

        return await page(request, "errors.html", "errors", reading(build))

    @router.get("/errors/tail")
    async def tail(
        request: Request,
        server_after: int = Query(0, ge=0),
        client_after: int = Query(0, ge=0),
    ) -> Response:
        """What the live tail has not shown yet (JSON, polled by console.js)."""
        admin(request)

        def read() -> dict[str, Any]:
            with database.read_transaction() as session:
                server = recent_errors(session, after_id=server_after, limit=50)
                client = recent_client_logs(session, after_id=client_after, limit=50)
            return {
                "server": [
                    {
                        "id": e.id,
                        "at": when(e.created_at),
                        "status": e.status,
                        "code": e.code,
                        "method": e.method,
                        "path": e.path,
                        "request_id": e.request_id,
                        "trace_id": e.trace_id,
                    }
                    for e in server
                ],
                "client": [
                    {
                        "id": c.id,
                        "at": when(c.received_at),
                        "level": c.level,
                        "message": c.message,
                        "area": c.area,
                        "url": c.url,
                        "request_id": c.request_id,
                        "trace_id": c.trace_id,
                    }
                    for c in client
                ],
            }

        return JSONResponse(
            await anyio.to_thread.run_sync(read), headers={"Cache-Control": "no-store"}
        )

    @router.get("/error-groups")
    async def groups(request: Request, hours: int = Query(24, ge=1, le=24 * 90)) -> Response:
        since = datetime.now(UTC) - timedelta(hours=hours)

        def build(session: Session) -> dict[str, Any]:
            return {"groups": error_groups(session, since=since, limit=ROWS), "hours": hours}

        return await page(request, "error_groups.html", "error-groups", reading(build))

    @router.get("/jobs")
    async def job_list(
        request: Request,
        queue: str = Query("", max_length=64),
        status: str = Query("", max_length=16),
    ) -> Response:
        def build() -> dict[str, Any]:
            counts = jobs.counts()
            return {
                "jobs": jobs.list(status=status or None, queue=queue or None, limit=ROWS),
                "queues": sorted({q for q, _ in counts}),
                "statuses": JOB_STATUSES,
                "queue": queue,
                "status": status,
            }

        return await page(request, "jobs.html", "jobs", build)

    @router.get("/jobs/{job_id}")
    async def job_detail(request: Request, job_id: int) -> Response:
        def build() -> dict[str, Any]:
            job = jobs.get(job_id)
            return {"job": job, "terminal": job is None or job.status in TERMINAL_JOB_STATUSES}

        return await page(request, "job.html", "jobs", build, found=lambda v: v["job"] is not None)

    @router.get("/workflows")
    async def workflow_list(request: Request, status: str = Query("", max_length=16)) -> Response:
        def build() -> dict[str, Any]:
            return {"runs": workflows.list(status=status or None, limit=ROWS), "status": status}

        return await page(request, "workflows.html", "workflows", build)

    @router.get("/workflows/{workflow_id}")
    async def workflow_detail(request: Request, workflow_id: str) -> Response:
        return await page(
            request,
            "workflow.html",
            "workflows",
            lambda: {"timeline": workflows.get(workflow_id)},
            found=lambda v: v["timeline"] is not None,
        )

    @router.get("/users")
    async def users(request: Request, q: str = Query("", max_length=320)) -> Response:
        def build(session: Session) -> dict[str, Any]:
            query = users_query(q=q).limit(ROWS)
            return {"users": list(session.scalars(query)), "q": q, "actions": user_actions}

        return await page(request, "users.html", "users", reading(build))

    @router.get("/audit")
    async def audit_log(
        request: Request,
        actor: str = Query("", max_length=64),
        action: str = Query("", max_length=100),
    ) -> Response:
        def build(session: Session) -> dict[str, Any]:
            query = audit_query(actor=actor, action=action).limit(ROWS)
            return {"entries": list(session.scalars(query)), "actor": actor, "action": action}

        return await page(request, "audit.html", "audit", reading(build))

    @router.get("/webhooks")
    async def webhooks(request: Request) -> Response:
        def build(session: Session) -> dict[str, Any]:
            subscriptions = list(
                session.scalars(select(WebhookSubscriptionRow).order_by(WebhookSubscriptionRow.id))
            )
            deliveries = list(
                session.scalars(
                    select(WebhookDeliveryRow).order_by(WebhookDeliveryRow.id.desc()).limit(ROWS)
                )
            )
            return {"subscriptions": subscriptions, "deliveries": deliveries}

        return await page(request, "webhooks.html", "webhooks", reading(build))

    @router.get("/rate-limits")
    async def rate_limits(request: Request) -> Response:
        if (refused := refusal(request)) is not None:
            return refused
        hits = await anyio.to_thread.run_sync(_rate_limit_hits, metrics)
        return render(request, "rate_limits.html", active="rate-limits", hits=hits)

    @router.get("/alerts")
    async def alerts(request: Request) -> Response:
        def build(session: Session) -> dict[str, Any]:
            return {"states": alert_states(session), "events": alert_history(session, limit=ROWS)}

        return await page(request, "alerts.html", "alerts", reading(build))

    @router.get("/health")
    async def health_page(request: Request) -> Response:
        if (refused := refusal(request)) is not None:
            return refused
        status, checks = await health.run()
        return render(request, "health.html", active="health", status=status, checks=checks)

    return router


def _charts(session: Session, now: datetime) -> dict[str, Any]:
    """The last hour, a point per minute: requests, p50/p95 latency, error rate, jobs."""
    end = now.replace(second=0, microsecond=0)
    start = end - timedelta(minutes=59)
    minutes = [start + timedelta(minutes=i) for i in range(60)]
    by_minute = {_minute(m.minute): m for m in traffic(session, start, now)}
    done = {_minute(minute): (ok, failed) for minute, ok, failed in job_throughput(session, start)}
    stats = [by_minute.get(m) for m in minutes]
    requests = [float(s.requests) if s else 0.0 for s in stats]
    error_rate = [(100.0 * s.errors / s.requests) if s and s.requests else None for s in stats]
    p50 = [float(s.p50_ms) if s and s.requests and s.p50_ms is not None else None for s in stats]
    p95 = [float(s.p95_ms) if s and s.requests and s.p95_ms is not None else None for s in stats]
    succeeded = [float(done.get(m, (0, 0))[0]) for m in minutes]
    failed = [float(done.get(m, (0, 0))[1]) for m in minutes]
    charts = []
    for title, series, unit in (
        ("Requests per minute", [Series("requests", requests)], ""),
        (
            "Latency",
            [Series("p50", p50), Series("p95", p95, tone="secondary")],
            " ms",
        ),
        ("Server error rate", [Series("5xx", error_rate, tone="danger")], "%"),
        (
            "Jobs finished per minute",
            [Series("succeeded", succeeded), Series("failed", failed, tone="danger")],
            "",
        ),
    ):
        charts.append(
            {
                "title": title,
                "svg": line_chart(title, minutes, series, unit=unit),
                "legend": legend(series),
            }
        )
    total = sum(int(r) for r in requests)
    errors = sum(s.errors for s in stats if s)
    return {"charts": charts, "requests": total, "errors": errors}


def _minute(value: datetime) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(second=0, microsecond=0)


def _rate_limit_hits(metrics: Metrics) -> list[tuple[str, int]]:
    """429s per limit scope since the processes started (all of them, in multiprocess
    mode), from the same counter ``/metrics`` exports."""
    hits: dict[str, int] = {}
    for family in metrics.registry.collect():
        if family.name != "bastion_rate_limit_hits":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                scope = sample.labels.get("scope", "")
                hits[scope] = hits.get(scope, 0) + int(sample.value)
    return sorted(hits.items(), key=lambda item: -item[1])
