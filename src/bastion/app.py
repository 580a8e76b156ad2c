"""``App`` holds an app's declarations; ``Runtime`` wires them to settings and services.

An ``App`` is created once at import time and only collects declarations
(functions, routers, error codes, start-up hooks); it holds no connections.
``app.runtime(settings)`` builds a :class:`Runtime` with its own database, health
registry and invoker, so a test can build, use and throw away as many as it likes.
:func:`build_asgi_app` lists the request path in runtime order.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import structlog
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel
from sqlalchemy import MetaData
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware

from bastion.alerts.admin import admin_function as alerts_admin_function
from bastion.alerts.evaluate import alerts_job
from bastion.auth.oidc import OidcClient
from bastion.auth.passwords import Passwords
from bastion.auth.principal import Principal
from bastion.auth.service import Authenticator
from bastion.auth.sessions import DatabaseSessionStore
from bastion.auth.tokens import Tokens
from bastion.cache import build_query_cache
from bastion.console.api import build_admin_router
from bastion.console.pages import ActionField, UserAction, build_console_router
from bastion.context import Context
from bastion.db.database import Database
from bastion.db.migrations import Migrator
from bastion.db.pagination import CursorCodec
from bastion.errors import ErrorCatalog
from bastion.files import FileService
from bastion.functions import FunctionKind, FunctionSpec, Invoker, declare
from bastion.http.auth_routes import (
    AuthRoutes,
    LoginHook,
    Preferences,
    RegisterHook,
    build_auth_router,
    credential_paths,
)
from bastion.http.client_log_routes import build_client_log_router
from bastion.http.file_routes import build_download_router, build_upload_router
from bastion.http.middleware.access_log import AccessLogMiddleware
from bastion.http.middleware.authentication import AuthenticationMiddleware
from bastion.http.middleware.body_limit import BodyLimitMiddleware
from bastion.http.middleware.client_ip import ClientIpMiddleware
from bastion.http.middleware.errors import ErrorMiddleware
from bastion.http.middleware.idempotency import IdempotencyMiddleware
from bastion.http.middleware.metrics import MetricsMiddleware
from bastion.http.middleware.rate_limit import RateLimitMiddleware
from bastion.http.middleware.request_id import RequestIdMiddleware
from bastion.http.middleware.security_headers import SecurityHeadersMiddleware
from bastion.http.middleware.tracing import TracingMiddleware
from bastion.http.problems import ProblemRenderer
from bastion.http.realtime_routes import build_realtime_router
from bastion.http.routing import build_api
from bastion.http.workflow_routes import build_workflow_router
from bastion.idempotency import IdempotencyStore
from bastion.integrations import HttpClient
from bastion.jobs import Job, JobRegistry, Jobs, QueueSpec, Retry, declare_job
from bastion.jobs.cron import CatchUp, CronSpec, check_expression
from bastion.mail import Mailer, MailPermanentError, MailTemplateError
from bastion.monitoring import client_logs
from bastion.monitoring import stats as request_stats
from bastion.monitoring.collector import DatabaseCollector
from bastion.monitoring.errors import purge_error_log
from bastion.observability.health import HealthRegistry
from bastion.observability.logs import configure_logging, get_logger
from bastion.observability.metrics import Metrics, multiprocess_dir
from bastion.observability.tracing import Tracing
from bastion.pubsub import Bus, Message, make_bus
from bastion.ratelimit import Limiter
from bastion.realtime import Realtime, RealtimeDeclarations
from bastion.search import SearchIndex
from bastion.search.upkeep import keep_in_step
from bastion.settings import Settings, load_settings
from bastion.types import ASGIApp, Receive, Scope, Send
from bastion.webhooks import (
    WebhookDeclarations,
    WebhookService,
    admin_functions,
    declare_receiver,
    default_event_id,
)
from bastion.workflows import Workflow, Workflows, WorkflowSpec, declare_workflow
from bastion.workflows.engine import WorkflowDiverged

F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R")
StartupHook = Callable[["Runtime"], Awaitable[None] | None]


class App:
    """An application's declarations.

    Args:
        name: The app's name; also its migration branch label.
        metadata: The app's SQLAlchemy ``MetaData`` (for migrations).
        migrations: Folder of the app's Alembic revisions.
        messages: Folder of ``<locale>.toml`` error message catalogs.
        config_sections: Extra ``bastion.toml`` sections, name to Pydantic model.
        config: The app's ``bastion.toml`` (used when no other path is given).
        api_prefix: Prefix of every function route.

    Example::

        app = App("shop", metadata=Base.metadata, migrations=HERE / "migrations")

        @app.query("/products/{product_id}")
        def get_product(ctx: Context, product_id: int) -> ProductOut:
            ...
    """

    def __init__(
        self,
        name: str,
        *,
        metadata: MetaData | None = None,
        migrations: str | Path | None = None,
        messages: str | Path | None = None,
        config_sections: Mapping[str, type[BaseModel]] | None = None,
        config: str | Path | None = None,
        api_prefix: str = "/api/v1",
        title: str | None = None,
        description: str | None = None,
        mail_templates: str | Path | None = None,
    ) -> None:
        self.name = name
        self.metadata = metadata
        self.migrations = Path(migrations) if migrations else None
        self.config_sections = dict(config_sections or {})
        self.config = Path(config) if config else None
        self.api_prefix = api_prefix.rstrip("/")
        self.title = title or name
        self.description = description
        self.errors = ErrorCatalog.with_platform_messages()
        if messages:
            self.errors.load_dir(Path(messages))
        self.functions: list[FunctionSpec] = []
        self.routers: list[tuple[APIRouter, str]] = []
        #: Routers built per runtime, for routes that use its services (see include_router).
        self.router_factories: list[tuple[Callable[[Runtime], APIRouter], str]] = []
        self.startup_hooks: list[StartupHook] = []
        self.auth_routes: AuthRoutes | None = None
        self.jobs = JobRegistry()
        self.workflows: dict[str, WorkflowSpec] = {}
        self._workflow_runner: Job[Any] | None = None
        self.mail_templates = Path(mail_templates) if mail_templates else None
        #: ``app.send_email.enqueue(ctx, template=..., to=[...], context={...})``: render
        #: and send a templated email as a job (with ``mail_templates`` only).
        self.send_email: Job[Any] | None = (
            self.job(
                queue="mail",
                name="bastion.send_email",
                retry=Retry(
                    max_attempts=8,
                    base_s=5,
                    max_delay_s=600,
                    give_up_on=(MailPermanentError, MailTemplateError),
                ),
            )(_send_email)
            if self.mail_templates
            else None
        )
        self.webhooks = WebhookDeclarations()
        self.search_indexes: dict[str, SearchIndex] = {}
        self.realtime = RealtimeDeclarations()
        #: The admin permission of file routes, set by :meth:`use_files` (``None``: off).
        self.files_admin: str | None = None
        #: The ingest job of ``POST /client-logs``, set by :meth:`use_client_logs` (``None``: off).
        self.client_logs: Job[Any] | None = None
        #: The app's own actions on users in the admin console (:meth:`console_user_action`).
        self.console_user_actions: list[UserAction] = []

    def _register(self, kind: FunctionKind, path: str, options: dict[str, Any]) -> Callable[[F], F]:
        def decorator(fn: F) -> F:
            self._add_function(declare(kind, fn, path=path, **options))
            return fn

        return decorator

    def _add_function(self, spec: FunctionSpec) -> None:
        if any(existing.name == spec.name for existing in self.functions):
            raise ValueError(f"a function named {spec.name!r} is already declared")
        self.functions.append(spec)

    def query(
        self,
        path: str,
        *,
        response: Any = None,
        permissions: Iterable[str] = (),
        name: str | None = None,
        tags: Iterable[str] = (),
        cache_control: str | None = None,
        etag: bool | None = None,
        rate_limit: str | None = None,
        cache: str | float | timedelta | None = None,
        primary: bool = False,
    ) -> Callable[[F], F]:
        """Declare a read-only function served on ``GET path``.

        With ``cache="5m"`` results are kept per arguments and caller for that long,
        and dropped at once by any commit writing a table the query read.

        With ``[database] replica_urls`` queries read from a replica, which may lag
        behind; ``primary=True`` reads from the primary, for a query that must see the
        caller's own latest writes (cached queries always do).

        With ``rate_limit`` (``"10/minute"``) each caller, the user or else the client
        address, may call it that often; more calls are 429 ``rate_limited``.
        """
        return self._register(
            FunctionKind.QUERY,
            path,
            dict(
                method="GET",
                status_code=None,
                response=response,
                permissions=permissions,
                name=name,
                tags=tags,
                cache_control=cache_control,
                etag=etag,
                rate_limit=rate_limit,
                cache=cache,
                primary=primary,
            ),
        )

    def mutation(
        self,
        path: str,
        *,
        method: str = "POST",
        status_code: int | None = None,
        response: Any = None,
        permissions: Iterable[str] = (),
        name: str | None = None,
        tags: Iterable[str] = (),
        require_idempotency_key: bool = False,
        rate_limit: str | None = None,
    ) -> Callable[[F], F]:
        """Declare a read-write function: one transaction, committed only if it returns.

        With ``require_idempotency_key`` a call without an ``Idempotency-Key`` is 400;
        ``rate_limit`` is as for :meth:`query`.
        """
        options = dict(
            method=method,
            status_code=status_code,
            response=response,
            permissions=permissions,
            name=name,
            tags=tags,
            idempotency_required=require_idempotency_key,
            rate_limit=rate_limit,
        )
        return self._register(FunctionKind.MUTATION, path, _unsafe(options))

    def action(
        self,
        path: str,
        *,
        method: str = "POST",
        status_code: int | None = None,
        response: Any = None,
        permissions: Iterable[str] = (),
        name: str | None = None,
        tags: Iterable[str] = (),
        require_idempotency_key: bool = False,
        rate_limit: str | None = None,
    ) -> Callable[[F], F]:
        """Declare an async function that talks to the outside world; it holds no transaction.

        With ``require_idempotency_key`` a call without an ``Idempotency-Key`` is 400;
        ``rate_limit`` is as for :meth:`query`.
        """
        options = dict(
            method=method,
            status_code=status_code,
            response=response,
            permissions=permissions,
            name=name,
            tags=tags,
            idempotency_required=require_idempotency_key,
            rate_limit=rate_limit,
        )
        return self._register(FunctionKind.ACTION, path, _unsafe(options))

    def job(
        self,
        *,
        queue: str = "default",
        name: str | None = None,
        version: int = 1,
        priority: int = 0,
        retry: Retry | None = None,
        max_attempts: int | None = None,
        timeout: float | timedelta | None = None,
    ) -> Callable[[Callable[..., R]], Job[R]]:
        """Declare a background job; returns a :class:`~bastion.jobs.Job` to enqueue.

        A plain ``def`` runs in a transaction that also records its completion, so its
        database writes happen exactly once; an ``async def`` holds no transaction and
        runs at least once (make its effects idempotent). Arguments are validated at
        enqueue time and stored as JSON.

        Args:
            queue: Which workers run it (``bastion worker --queues``) and whose limits apply.
            name: Stored with each row; keep it stable across renames of the function.
            version: Bump when the arguments change incompatibly, and keep the old
                version declared (``name=`` the same) until its rows are gone.
            priority: Higher runs first within the queue.
            retry: Backoff policy; ``max_attempts`` overrides just its attempt count.
            timeout: An attempt running longer fails (and is retried by the policy).
        """

        def decorator(fn: Callable[..., R]) -> Job[R]:
            spec = declare_job(
                fn,
                name=name,
                version=version,
                queue=queue,
                priority=priority,
                retry=retry,
                max_attempts=max_attempts,
                timeout=timeout,
            )
            self.jobs.add(spec)
            return Job(spec)

        return decorator

    def cron(
        self,
        expression: str,
        *,
        name: str | None = None,
        catch_up: CatchUp = "skip",
        queue: str = "default",
        retry: Retry | None = None,
        max_attempts: int | None = None,
        timeout: float | timedelta | None = None,
    ) -> Callable[[Callable[..., R]], Job[R]]:
        """Declare a job that runs on a schedule: ``@app.cron("0 2 * * *")`` (UTC).

        Each tick enqueues the job once, whatever the number of worker processes.
        ``catch_up`` says what happens to ticks missed while no worker ran: ``"skip"``
        them, or run ``"once"`` for all of them. The job takes only ``ctx``; it is also
        a normal job (``enqueue`` it to run it now).
        """

        def decorator(fn: Callable[..., R]) -> Job[R]:
            schedule = name or fn.__name__
            check_expression(expression, f"cron {schedule}")
            if schedule in self.jobs.schedules:
                raise ValueError(f"a cron schedule named {schedule!r} is already declared")
            handle = self.job(
                queue=queue, name=name, retry=retry, max_attempts=max_attempts, timeout=timeout
            )(fn)
            if handle.spec.arguments.names:
                raise TypeError(f"cron {schedule}: a scheduled job takes only ctx")
            self.jobs.schedules[schedule] = CronSpec(schedule, expression, handle.spec, catch_up)
            return handle

        return decorator

    def workflow(
        self,
        *,
        name: str | None = None,
        step_retry: Retry | None = None,
        recovery_s: float = 60.0,
    ) -> Callable[[Callable[..., Any]], Workflow[Any]]:
        """Declare a durable workflow: an ``async def`` taking ``wf`` and its arguments.

        ``await wf.step(fn, **args)`` runs a step once: a plain ``def`` step in a
        transaction with its checkpoint (exactly once), an ``async def`` step retried by
        ``step_retry`` (at least once; use ``ctx.idempotency_key`` with peers). Give a
        step ``compensate=`` to undo it when a later step fails for good. ``wf.sleep``,
        ``wf.enqueue`` and ``wf.child`` are durable too. Runs go through the
        ``workflows`` queue; a run left unfinished for ``recovery_s`` is resumed.
        """

        def decorator(fn: Callable[..., Any]) -> Workflow[Any]:
            spec = declare_workflow(
                fn,
                name=name,
                queue="workflows",
                step_retry=step_retry or Retry(max_attempts=3, base_s=0.5, max_delay_s=5),
                recovery_s=recovery_s,
            )
            if spec.name in self.workflows:
                raise ValueError(f"a workflow named {spec.name!r} is already declared")
            self.workflows[spec.name] = spec
            return Workflow(spec, self._runner())

        return decorator

    def _runner(self) -> Job[Any]:
        # One platform job runs every workflow of the app; declared with the first one.
        if self._workflow_runner is None:

            async def run_workflow(ctx: Context, workflow_id: str, recovering: bool = False) -> str:
                status: str = await ctx.services.workflows.resume(ctx, workflow_id, recovering)
                return status

            self._workflow_runner = self.job(
                queue="workflows",
                name="bastion.workflow",
                retry=Retry(
                    max_attempts=20, base_s=1, max_delay_s=300, give_up_on=(WorkflowDiverged,)
                ),
            )(run_workflow)
        return self._workflow_runner

    def queue(self, name: str, *, concurrency: int | None = None, rate: str | None = None) -> None:
        """Limit a queue across every worker process: ``concurrency`` jobs at once,
        ``rate`` starts (``"10/second"``)."""
        if concurrency is not None and concurrency < 1:
            raise ValueError(f"queue {name}: concurrency must be at least 1")
        spec = QueueSpec(name, concurrency, rate)
        try:
            spec.rate_per_s  # noqa: B018 - validates the rate now, not at the first claim
        except ValueError:
            raise ValueError(
                f"queue {name}: rate {rate!r} is not a limit like '10/second'"
            ) from None
        self.jobs.queues[name] = spec

    def include_router(
        self, router: APIRouter | Callable[[Runtime], APIRouter], *, prefix: str = ""
    ) -> None:
        """Mount a plain FastAPI router beside bastion's functions; or a function that
        builds one from the runtime, when its routes use the runtime's services (a
        streamed upload into ``runtime.files``, say)."""
        if isinstance(router, APIRouter):
            self.routers.append((router, prefix))
        else:
            self.router_factories.append((router, prefix))

    def use_auth(
        self,
        *,
        preferences: type[BaseModel] = Preferences,
        on_register: RegisterHook | None = None,
        on_login: LoginHook | None = None,
        admin_permission: str = "write:all",
    ) -> None:
        """Serve the account endpoints under the API prefix: register, login, logout,
        tokens, ``/me``, ``/me/preferences``, API keys and admin ban/unban.

        Args:
            preferences: The model ``PATCH /me/preferences`` accepts (``language``
                feeds the error-message locale).
            on_register: Called with the session and the new user inside the
                registration transaction (a welcome email's outbox row, say).
            on_login: Called at every sign-in (password or OpenID Connect) with a write
                session, the user and the data the new browser session will hold, before
                that session starts. Change the data in place (pop an anonymous cart, say);
                if the hook raises, its transaction rolls back and the login fails with no
                session started.
            admin_permission: What ban and unban require.

        Example:
            ```python
            def merge_cart(session: Session, user: User, data: dict[str, Any]) -> None:
                for product_id, quantity in data.pop("cart", {}).items():
                    add_to_cart(session, user.id, int(product_id), quantity)


            app.use_auth(on_login=merge_cart)
            ```
        """
        self.auth_routes = AuthRoutes(
            preferences=preferences,
            on_register=on_register,
            on_login=on_login,
            admin_permission=admin_permission,
        )

    def webhook_receiver(
        self,
        path: str,
        *,
        handler: Job[Any],
        secret_setting: str | None = None,
        secret: Callable[[Settings], Any] | None = None,
        header: str = "Webhook-Signature",
        event_id: Callable[[Any], Any] = default_event_id,
        source: str | None = None,
        tolerance_s: float | None = None,
    ) -> None:
        """Receive signed webhooks on ``POST {api_prefix}{path}``, each event once, as a job.

        The signature (``t=...,v1=...``, HMAC-SHA256 over ``"<t>.<raw body>"``) is
        checked before anything else (400 ``invalid_signature``), then the JSON (400
        ``invalid_json``); the event id is recorded once per ``source`` and ``handler``
        enqueued with ``event=<payload>`` in the same transaction. The answer is 200
        ``{"received": true, "duplicate": false}``; a repeated id is ``"duplicate": true``
        and enqueues nothing.

        Args:
            handler: A job of this app taking the parsed payload as ``event``.
            secret_setting: Where the secret is, ``"section.key"`` (an app section's or
                a built-in one's); a list of secrets accepts any (rotation).
            secret: Or a function of the settings returning the secret(s).
            header: The request header carrying the signature.
            event_id: Extracts the event id from the payload (default ``payload["id"]``).
            source: Names the sender in the events table (default: the path).
            tolerance_s: How old (or early) a signature may be; default
                ``webhooks.tolerance_s`` (300 s).

        Example::

            app.webhook_receiver(
                "/webhooks/payments", handler=on_payment_event,
                secret_setting="shop.gateway_webhook_secret", header="Gateway-Signature",
            )
        """
        self.webhooks.add_receiver(
            declare_receiver(
                path,
                handler=handler,
                secret=secret,
                secret_setting=secret_setting,
                header=header,
                event_id=event_id,
                source=source,
                tolerance_s=tolerance_s,
            )
        )

    def use_webhooks(
        self,
        *,
        admin_permission: str = "write:all",
        retry: Retry | None = None,
        queue: str = "webhooks",
    ) -> None:
        """Send webhooks: subscriptions, ``publish(ctx, type, data)`` in mutations, signed
        deliveries by a platform job, and admin endpoints under ``/admin/webhooks``.

        Args:
            admin_permission: What the admin endpoints require.
            retry: The backoff between delivery attempts (the attempt count is the
                ``webhooks.max_attempts`` setting); see ``bastion.webhooks.DEFAULT_RETRY``.
            queue: The job queue of deliveries (limit it with :meth:`queue`).
        """
        self.jobs.add(self.webhooks.enable_delivery(retry=retry, queue=queue))
        for spec in admin_functions(admin_permission):
            self._add_function(spec)

    def use_files(self, *, admin_permission: str = "write:all") -> None:
        """Serve files: ``POST {api_prefix}/files`` (signed-in users upload; multipart
        field ``file``), ``DELETE {api_prefix}/files/{id}`` (owner or admin) and
        ``GET /files/{id}?expires=...&sig=...`` (signed downloads). ``runtime.files``
        works without it too.

        Args:
            admin_permission: What lets a caller download and delete others' files.
        """
        self.files_admin = admin_permission

    def use_housekeeping(self, schedule: str = "17 * * * *") -> Job[Any]:
        """Purge expired state on a schedule (hourly by default): database sessions,
        refresh tokens, idempotency keys, finished jobs and cron records older than
        ``[jobs] retention_s``, error-log rows older than ``[errors] log_retention_s`` and
        request statistics older than ``[metrics] stats_retention_s``. Returns the cron job
        (enqueue it to run it now)."""

        async def housekeeping(ctx: Context) -> dict[str, int]:
            purged: dict[str, int] = await anyio.to_thread.run_sync(ctx.services.housekeep)
            ctx.log.info("housekeeping", **purged)
            return purged

        return self.cron(schedule, name="bastion.housekeeping", queue="bastion")(housekeeping)

    def use_alerts(
        self, schedule: str | None = None, *, admin_permission: str = "write:all"
    ) -> Job[Any]:
        """Evaluate the ``[[alerts.rules]]`` on a schedule and notify (log, Slack-compatible
        webhooks, email), and serve ``GET {api_prefix}/admin/alerts``.

        The cron job ``bastion.alerts`` runs on the ``bastion`` queue. Without
        ``schedule`` it evaluates at ``[alerts] schedule`` (every minute by default);
        ``schedule`` fixes it in code instead. Returns the cron job (enqueue it to
        evaluate now). See docs/howto/alerts.md.

        Args:
            admin_permission: What ``GET /admin/alerts`` requires.
        """
        self._add_function(alerts_admin_function(admin_permission))
        return self.cron(schedule or "* * * * *", name="bastion.alerts", queue="bastion")(
            alerts_job(schedule)
        )

    def use_client_logs(self, *, schedule: str = "43 * * * *") -> Job[Any]:
        """Take logs and errors from browsers and mobile apps at ``POST
        {api_prefix}/client-logs``; each batch is stored by a job on the ``bastion``
        queue, and entries older than ``[client_logs] retention_s`` are deleted on
        ``schedule`` (hourly by default). Returns the retention cron job.

        Signed-in browsers post with their session cookie, so they send
        ``X-CSRF-Token`` like any other write; anonymous visitors may post too (with
        ``[client_logs] anonymous_rate_limit``) unless ``allow_anonymous`` is off.
        """
        self.client_logs = self.job(queue="bastion", name=client_logs.INGEST_JOB)(
            client_logs.ingest
        )
        return self.cron(schedule, name=client_logs.PURGE_JOB, queue="bastion")(client_logs.purge)

    def console_user_action(
        self, label: str, path: str, *, fields: Iterable[ActionField] = ()
    ) -> None:
        """Offer an action on each user in the admin console's users page.

        The console posts ``{"reason": ..., **fields}`` to ``path`` under the API
        prefix, ``{id}`` replaced by the user's id: the app's own admin endpoint
        checks, applies and audits it (the shop's credit adjustment is one).
        """
        if "{id}" not in path:
            raise ValueError(f"console action path {path!r} must contain {{id}}")
        self.console_user_actions.append(UserAction(label, path, tuple(fields)))

    def search_index(self, index: SearchIndex) -> SearchIndex:
        """Declare a full-text index: the runtime's ORM writes to its table keep it in
        step (:mod:`bastion.search.upkeep`), and ``bastion search reindex`` knows it."""
        if index.name in self.search_indexes:
            raise ValueError(f"search index {index.name!r} is declared twice")
        self.search_indexes[index.name] = index
        return index

    def channel(self, name: str, *, per_user: bool = True, permissions: Iterable[str] = ()) -> None:
        """Declare a realtime channel clients may subscribe to (``/realtime``, ``/events``).

        Events go out with :func:`bastion.realtime.send`; on a ``per_user`` channel each
        user hears only the events sent to them, on any of their connections and server
        processes. ``permissions`` are all required to subscribe.
        """
        self.realtime.add_channel(name, per_user=per_user, permissions=permissions)

    def live_query(self, name: str, query: Callable[..., Any] | str) -> None:
        """Let realtime clients subscribe to a declared query under ``name``: they get its
        result, then the new result after every commit that changes it."""
        spec = self.spec(query)
        if spec.kind is not FunctionKind.QUERY:
            raise TypeError(f"{spec.name} is a {spec.kind.value}; only queries can be live")
        self.realtime.add_query(name, spec.name)

    def on_startup(self, hook: StartupHook) -> StartupHook:
        """Run ``hook(runtime)`` at start-up, after migrations (sync hooks run on a thread)."""
        self.startup_hooks.append(hook)
        return hook

    def spec(self, fn: Callable[..., Any] | str) -> FunctionSpec:
        """The declaration of a function, by object or name."""
        for spec in self.functions:
            if spec.fn is fn or spec.name == fn:
                return spec
        raise LookupError(f"{fn!r} is not a function of app {self.name!r}")

    def load_settings(self, path: str | Path | None = None, **options: Any) -> Settings:
        """Load settings with this app's extra sections; see :func:`bastion.load_settings`."""
        return load_settings(
            path if path is not None else self._default_config(),
            extensions=self.config_sections,
            **options,
        )

    def _default_config(self) -> Path | None:
        # The same order as the CLI: BASTION_CONFIG, ./bastion.toml, the app's own file.
        if os.environ.get("BASTION_CONFIG"):
            return Path(os.environ["BASTION_CONFIG"])
        if Path("bastion.toml").exists():
            return Path("bastion.toml")
        return self.config if self.config and self.config.exists() else None

    def runtime(self, settings: Settings | None = None) -> Runtime:
        """Wire this app to ``settings`` (loaded from the app's config when omitted)."""
        return Runtime(self, settings or self.load_settings())

    def asgi(self, settings: Settings | None = None) -> ASGIApp:
        """A ready ASGI application for servers: ``uvicorn --factory pkg.module:app.asgi``."""
        return self.runtime(settings).asgi()


class Runtime:
    """One app wired to one set of settings: database, health, invoker, error rendering.

    Every service is reachable from here (and from ``ctx.services`` in functions).
    """

    def __init__(self, app: App, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        if not structlog.is_configured():
            # Servers started without the CLI (``uvicorn --factory``) and test runs
            # still get bastion's processors: scrubbed, tracebacks without locals.
            configure_logging(
                level=settings.log.level,
                fmt=settings.log.format,
                env=settings.env,
                file=settings.log.file,
            )
        self.log = get_logger("bastion", app=app.name)
        self.database = Database(settings.database)
        #: The Prometheus families of ``/metrics`` (multiprocess files when configured).
        self.metrics = Metrics(multiprocess_dir=multiprocess_dir(settings.metrics.multiprocess_dir))
        self.metrics.register(DatabaseCollector(self.database))
        self.metrics.watch_pools(
            "primary", (self.database.write_engine.pool, self.database.read_engine.pool)
        )
        self.metrics.watch_pools(
            "replica", (replica.engine.pool for replica in self.database.replicas)
        )
        #: This process's per-minute request counts, written to ``bastion_request_stats``.
        self.request_stats = request_stats.RequestStats()
        #: Spans of requests, functions, SQL, outbound calls, jobs and workflow steps.
        self.tracing = Tracing(
            settings.tracing,
            service_name=app.name,
            service_version=settings.app.version,
            environment=settings.env,
        )
        self.tracing.instrument_engines(
            [
                self.database.write_engine,
                self.database.read_engine,
                *(replica.engine for replica in self.database.replicas),
            ]
        )
        self.health = HealthRegistry(
            default_timeout_s=settings.health.timeout_s, expose_errors=settings.expose_internals
        )
        self.health.add("database", self._check_database)
        for replica in self.database.replicas:
            # Not critical: queries fall back to the primary; "degraded" tells ops.
            check = partial(anyio.to_thread.run_sync, self.database.replicas.ping, replica)
            self.health.add(replica.name, check, critical=False)
        if settings.redis.url:
            self.health.add("redis", _redis_check(settings.redis.url))
        self.passwords = Passwords(settings.auth)
        self.limiter = Limiter(settings.ratelimit)
        if settings.ratelimit.enabled and not settings.ratelimit.storage_url.startswith("memory"):
            # Not critical: with fail_open the API keeps serving; "degraded" tells ops.
            self.health.add(
                "rate_limit_storage",
                self.limiter.healthy,
                critical=not settings.ratelimit.fail_open,
            )
        self.authenticator = Authenticator(settings, self.database, self.passwords)
        self.oidc = OidcClient(settings.oidc) if settings.oidc.providers else None
        self.idempotency = IdempotencyStore(self.database, settings.idempotency)
        self.http = HttpClient(
            settings.integrations,
            redis_url=settings.redis.url,
            tracing=self.tracing,
            metrics=self.metrics,
        )
        keep_in_step(self.database, app.search_indexes.values())
        self.cache = build_query_cache(
            settings.cache, redis_url=settings.redis.url, app_name=app.name
        )
        self.database.on_write(self.cache.invalidate)
        self.invoker = Invoker(
            self.database,
            settings,
            services=self,
            cache=self.cache if settings.cache.enabled else None,
            tracer=self.tracing.tracer,
        )
        #: Messages between this app's processes: write sets, realtime events, sign-outs.
        self.bus: Bus = make_bus(settings, app.name)
        self.database.on_write(self._publish_writes)
        self.bus.subscribe("writes", self._remote_writes)
        if not self.cache.shared:
            # Invalidations may have been missed while the bus was down (a shared cache
            # hears every process's commits in Redis itself).
            self.bus.on_gap(self.cache.clear)
        if self.bus.backend != "memory":
            self.health.add("pubsub", self.bus.healthy, critical=False)
        self.realtime = Realtime(
            declarations=app.realtime,
            functions={spec.name: spec for spec in app.functions},
            invoker=self.invoker,
            bus=self.bus,
            database=self.database,
            catalog=app.errors,
            settings=settings.realtime,
        )
        self.authenticator.on_signout(self.realtime.signed_out)
        self.metrics.watch_cache(self.cache)
        self.metrics.watch_gauge(
            self.metrics.realtime_connections, lambda: self.realtime.stats()["connections"]
        )
        self.jobs = Jobs(
            self.database,
            app.jobs,
            settings,
            services=self,
            tracer=self.tracing.tracer,
            metrics=self.metrics,
        )
        self.workflows = Workflows(
            self.database,
            app.workflows,
            settings,
            services=self,
            tracer=self.tracing.tracer,
            metrics=self.metrics,
        )
        self.mail = Mailer.from_settings(settings.mail, templates_dir=app.mail_templates)
        self.webhooks = WebhookService(
            app.webhooks, self.database, settings, app.jobs, tracing=self.tracing
        )
        self.files = FileService(
            self.database, settings, admin_permission=app.files_admin or "write:all"
        )
        #: Run a worker inside the server's lifespan (``bastion run --embedded-worker``).
        self.embedded_worker = bool(settings.jobs.embedded_worker)
        self.cursors = CursorCodec(settings.app.secret_key.get_secret_value())
        self.problems = ProblemRenderer(app.errors, settings, self.database)
        self.started = False
        self.app_routers: list[tuple[APIRouter, str]] = []
        self._api: FastAPI | None = None

    def migrator(self) -> Migrator:
        return Migrator(
            self.database,
            branch=self.app.name,
            versions_dir=self.app.migrations,
            metadata=self.app.metadata,
            # Search indexes create their tables in migrations, with no model to match.
            unmodelled=lambda table: any(
                index.owns_table(table) for index in self.app.search_indexes.values()
            ),
        )

    async def startup(self) -> None:
        """Apply migrations when configured, then run the app's start-up hooks."""
        if self.started:
            return
        if self.settings.database.auto_migrate:
            await anyio.to_thread.run_sync(self.migrator().upgrade)
        await self.bus.start()
        for hook in self.app.startup_hooks:
            if inspect.iscoroutinefunction(hook):
                await hook(self)
            else:
                await anyio.to_thread.run_sync(hook, self)
        self.started = True
        self.log.info("started", env=self.settings.env, database=self.database.backend)

    async def shutdown(self) -> None:
        """Release connections; the server has already drained in-flight requests."""
        await self.bus.aclose()
        # After the bus: the last statistics' commit need not tell other processes (a
        # publish still in flight when the bus closes would hold up its Redis client).
        await self.flush_request_stats()
        self.metrics.close()
        self.cache.close()
        await self.limiter.close()
        await self.http.aclose()
        await self.webhooks.aclose()
        await self.authenticator.close()
        if self.oidc is not None:
            await self.oidc.aclose()
        await anyio.to_thread.run_sync(self.database.dispose)
        # Last: it flushes the spans of everything above (a batch may wait on the collector).
        await anyio.to_thread.run_sync(self.tracing.shutdown)
        self.started = False
        self.log.info("stopped")

    async def call(
        self,
        fn: Callable[..., Any] | str,
        /,
        *,
        user: Principal | None = None,
        locale: str = "en",
        request_id: str = "",
        **args: Any,
    ) -> Any:
        """Invoke a declared function directly (from actions, hooks, tests)."""
        return await self.invoker.invoke(
            self.app.spec(fn), args, user=user, locale=locale, request_id=request_id
        )

    def housekeep(self) -> dict[str, int]:
        """Delete expired and old state now; returns the count per kind (see
        :meth:`App.use_housekeeping`)."""
        now = datetime.now(UTC)
        with self.database.transaction() as session:
            tokens = Tokens.purge_expired(session, now)
        jobs, fires = self.jobs.store.purge(timedelta(seconds=self.settings.jobs.retention_s))
        with self.database.transaction() as session:
            stats = request_stats.purge(
                session, timedelta(seconds=self.settings.metrics.stats_retention_s), now=now
            )
        with self.database.transaction() as session:
            errors = purge_error_log(
                session, timedelta(seconds=self.settings.errors.log_retention_s)
            )
        return {
            "sessions": DatabaseSessionStore(self.database).purge_expired(now),
            "refresh_tokens": tokens,
            "idempotency_keys": self.idempotency.purge_expired(now),
            "jobs": jobs,
            "cron_fires": fires,
            "request_stats": stats,
            "errors": errors,
        }

    async def flush_request_stats(self) -> int:
        """Write this process's request counts to the database now; returns the rows
        written (0 when the database is down: the counts wait for the next flush)."""
        try:
            return await anyio.to_thread.run_sync(self.request_stats.flush, self.database)
        except Exception as exc:
            self.log.warning("request_stats_flush_failed", error=f"{type(exc).__name__}: {exc}")
            return 0

    async def report_periodically(self) -> None:
        """Every ``[metrics] stats_flush_s`` until cancelled: write the request statistics
        and refresh the sampled metrics (run by the server's lifespan and ``bastion worker``)."""
        while True:
            await anyio.sleep(self.settings.metrics.stats_flush_s)
            await self.flush_request_stats()
            # Keeps this process's multiprocess files fresh for scrapes served by others.
            await anyio.to_thread.run_sync(self.metrics.sample)

    def _publish_writes(self, tables: frozenset[str]) -> None:
        self.bus.publish("writes", {"tables": sorted(tables)})

    def _remote_writes(self, message: Message) -> None:
        # This process's own commits invalidated its cache synchronously already; a
        # shared (Redis) cache was invalidated by the committing process itself.
        if message.origin != self.bus.origin and not self.cache.shared:
            self.cache.invalidate(message.data.get("tables", ()))

    async def _check_database(self) -> None:
        await anyio.to_thread.run_sync(self.database.ping, abandon_on_cancel=True)

    def api(self) -> FastAPI:
        """The FastAPI application at the core of the request path (routes, OpenAPI)."""
        if self._api is None:

            @asynccontextmanager
            async def lifespan(_api: FastAPI) -> AsyncIterator[None]:
                await self.startup()
                async with anyio.create_task_group() as stats:
                    stats.start_soon(self.report_periodically)
                    if not (self.embedded_worker and self.app.jobs.jobs):
                        yield
                    else:
                        async with anyio.create_task_group() as group:
                            worker = self.jobs.worker()
                            await group.start(worker.run)
                            yield
                            worker.stop()
                    stats.cancel_scope.cancel()
                await self.shutdown()

            #: The app's own routers, those built by its factories included (``bastion
            #: routes`` tells their routes from bastion's by these).
            self.app_routers = list(self.app.routers) + [
                (build(self), prefix) for build, prefix in self.app.router_factories
            ]
            routers = list(self.app_routers)
            if self.app.auth_routes is not None:
                auth_router = build_auth_router(
                    self.app.auth_routes,
                    authenticator=self.authenticator,
                    database=self.database,
                    limiter=self.limiter,
                    passwords=self.passwords,
                    settings=self.settings,
                    oidc=self.oidc,
                )
                routers.insert(0, (auth_router, self.app.api_prefix))
            if self.app.workflows:
                admin = (
                    self.app.auth_routes.admin_permission if self.app.auth_routes else "write:all"
                )
                routers.append(
                    (
                        build_workflow_router(self.workflows, admin_permission=admin),
                        self.app.api_prefix,
                    )
                )
            if self.app.realtime.channels or self.app.realtime.queries:
                routers.append(
                    (
                        build_realtime_router(self.realtime, self.authenticator, self.settings),
                        self.app.api_prefix,
                    )
                )
            if self.app.files_admin is not None:
                routers.append((build_upload_router(self.files), self.app.api_prefix))
                routers.append((build_download_router(self.files), ""))
            if self.app.client_logs is not None:
                client_log_router = build_client_log_router(
                    ingest=self.app.client_logs,
                    database=self.database,
                    settings=self.settings,
                    limiter=self.limiter if self.settings.ratelimit.enabled else None,
                    metrics=self.metrics,
                )
                routers.append((client_log_router, self.app.api_prefix))
            if self.app.auth_routes is not None:
                admin_router = build_admin_router(
                    database=self.database,
                    jobs=self.jobs.store,
                    admin_permission=self.app.auth_routes.admin_permission,
                )
                routers.append((admin_router, self.app.api_prefix))
                if self.settings.console.enabled:
                    console = build_console_router(
                        path=self.settings.console.path,
                        api_prefix=self.app.api_prefix,
                        admin_permission=self.app.auth_routes.admin_permission,
                        database=self.database,
                        jobs=self.jobs.store,
                        workflows=self.workflows,
                        health=self.health,
                        metrics=self.metrics,
                        user_actions=self.app.console_user_actions,
                    )
                    routers.append((console, self.settings.console.path))
            receivers = self.webhooks.router()
            if receivers is not None:
                routers.insert(0, (receivers, self.app.api_prefix))
            self._api = build_api(
                title=self.app.title,
                version=self.settings.app.version,
                description=self.app.description,
                functions=self.app.functions,
                routers=routers,
                prefix=self.app.api_prefix,
                invoker=self.invoker,
                limiter=self.limiter if self.settings.ratelimit.enabled else None,
                settings=self.settings,
                problems=self.problems,
                health=self.health,
                lifespan=lifespan,
                metrics=self.metrics,
            )
        return self._api

    def asgi(self) -> ASGIApp:
        return build_asgi_app(self)


def build_asgi_app(runtime: Runtime) -> ASGIApp:
    """The request path, outermost first.

    1. ``RequestIdMiddleware`` — assign or accept the request id; outermost so that
       every response, the error middleware's included, carries ``X-Request-ID``.
    2. ``ClientIpMiddleware`` (when ``server.trusted_proxies`` is set) — the client's
       address from X-Forwarded-For, believed only from trusted proxies.
    3. ``TracingMiddleware`` (unless ``tracing.enabled`` is off) — a server span per
       request, continuing an incoming ``traceparent``; binds ``trace_id`` and ``span_id``
       into every log line below it (the access log's included).
    4. ``AccessLogMiddleware`` — one line per request with the final status.
    5. ``MetricsMiddleware`` — counts each request by route template, method and final
       status into ``runtime.metrics`` and ``runtime.request_stats``; outside the error
       middleware, so 500s and 429s are counted. Answers ``[metrics] path`` itself: not
       an API route, not rate limited, not counted.
    6. ``SecurityHeadersMiddleware`` — CSP, nosniff, Referrer-Policy, framing, HSTS.
    7. ``CORSMiddleware`` (Starlette's, when ``cors.allow_origins`` is set) — outside
       the error middleware, so browsers can read error bodies too.
    8. ``ErrorMiddleware`` — any exception that escaped becomes a 500 problem.
    9. ``AuthenticationMiddleware`` — bearer token, API key or session cookie to the
       caller (401 on a bad credential), CSRF check for cookie-authenticated writes
       (not on login-like endpoints and webhook receivers, which never act on a session).
    10. ``RateLimitMiddleware`` (unless ``ratelimit.enabled`` is off) — limits per
        client address, user or API key (inside authentication, which says which),
        ``RateLimit-*`` headers of the tightest limit, 429 with Retry-After. Functions'
        own limits are checked by their endpoints and share the headers.
    11. ``GZipMiddleware`` — compress bodies above ``server.gzip_min_bytes``.
    12. ``BodyLimitMiddleware`` — 413 above ``server.max_body_bytes``.
    13. ``IdempotencyMiddleware`` (unless ``idempotency.enabled`` is off) — an unsafe
        request with an ``Idempotency-Key`` runs once per caller and key; retries get
        the stored response. Inside the body limit (the body it buffers is bounded) and
        gzip (it stores plain bodies), inside authentication (keys are per caller).
    14. The FastAPI router — validation, function routes, health, docs; its exception
        handlers render every error as problem+json.
    """
    settings = runtime.settings
    problems = runtime.problems

    async def reject_too_large(scope: Scope, receive: Receive, send: Send) -> None:
        await problems.asgi(scope, receive, send, HTTPException(413))

    stack: ASGIApp = runtime.api()
    if settings.idempotency.enabled:
        stack = IdempotencyMiddleware(stack, store=runtime.idempotency, render=problems.asgi)
    stack = BodyLimitMiddleware(
        stack, max_bytes=settings.server.max_body_bytes, reject=reject_too_large
    )
    stack = GZipMiddleware(stack, minimum_size=settings.server.gzip_min_bytes)
    if settings.ratelimit.enabled:
        stack = RateLimitMiddleware(
            stack, limiter=runtime.limiter, render=problems.asgi, metrics=runtime.metrics
        )
    stack = AuthenticationMiddleware(
        stack,
        authenticator=runtime.authenticator,
        render=problems.asgi,
        csrf_exempt=(
            credential_paths(runtime.app.api_prefix) if runtime.app.auth_routes else frozenset()
        )
        | runtime.webhooks.csrf_exempt(runtime.app.api_prefix),
    )
    stack = ErrorMiddleware(stack, render=problems.asgi)
    cors = settings.cors
    if cors.allow_origins:
        stack = CORSMiddleware(
            stack,
            allow_origins=cors.allow_origins,
            allow_methods=cors.allow_methods,
            allow_headers=cors.allow_headers,
            expose_headers=cors.expose_headers,
            allow_credentials=cors.allow_credentials and "*" not in cors.allow_origins,
            max_age=cors.max_age_s,
        )
    hsts = (
        settings.security.hsts
        if settings.security.hsts is not None
        else settings.env == "production"
    )
    stack = SecurityHeadersMiddleware(stack, settings=settings.security, hsts=hsts)
    stack = MetricsMiddleware(
        stack,
        metrics=runtime.metrics,
        stats=runtime.request_stats,
        routes=runtime.api().router.routes,
        settings=settings.metrics,
        render=problems.asgi,
    )
    if settings.log.access_log:
        stack = AccessLogMiddleware(stack)
    if runtime.tracing.enabled:
        # Inside the request id (a span attribute) and the client address; outside the
        # access log, so its line carries the trace id too.
        stack = TracingMiddleware(
            stack,
            tracer=runtime.tracing.tracer,
            skip=frozenset({"/health/live", "/health/ready", settings.metrics.path}),
        )
    if settings.server.trusted_proxies:
        stack = ClientIpMiddleware(stack, trusted_proxies=settings.server.trusted_proxies)
    stack = RequestIdMiddleware(stack)
    return stack


async def _send_email(
    ctx: Context,
    template: str,
    to: list[str],
    locale: str = "en",
    context: dict[str, Any] | None = None,
) -> str:
    """Render ``template`` in ``locale`` and send it; returns the Message-ID."""
    mailer: Mailer = ctx.services.mail
    if mailer.templates is None:
        raise MailTemplateError("no mail templates configured")
    rendered = mailer.templates.render(template, locale, **(context or {}))
    subject, text, html = rendered
    # The same Message-ID on every attempt lets receivers drop a repeat.
    assert ctx.job is not None
    message_id = f"<job-{ctx.job.id}.{ctx.services.app.name}@bastion>"
    return await mailer.send(to, subject, text, html, message_id=message_id)


def _unsafe(options: dict[str, Any]) -> dict[str, Any]:
    # Responses of functions that change things are never cached or revalidated.
    return {**options, "cache_control": None, "etag": False}


def _redis_check(url: str) -> Callable[[], Awaitable[None]]:
    # Imported here, not in the check: a first import on a loaded machine could take
    # the check's whole time limit and report a healthy Redis as down.
    import redis.asyncio as redis

    async def check() -> None:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        try:
            await client.ping()
        finally:
            await client.aclose()

    return check
