"""Peer (b): peer (a) plus the plugins a FastAPI service usually grows.

On top of peer (a)'s route (sync ``def``, session per request, ``session.get``,
``response_model``) this adds, roughly what bastion does on every request:

- a request-id middleware (accept a well-formed ``X-Request-ID`` or make one, echo
  it, bind it into the log context);
- a structlog JSON access log, one line per request, written to ``$BENCH_LOG_FILE``;
- prometheus-client: a request counter and a latency histogram by route template;
- slowapi rate limiting, quickstart style (decorator, in-memory storage), with a
  limit far above anything the benchmark reaches;
- a PyJWT HS256 bearer check on the route (secret ``$BENCH_JWT_SECRET``).

``create`` writes the middleware as pure ASGI; ``create_bhm`` builds the same
stack from ``BaseHTTPMiddleware`` classes, the form most blog posts show, for
reference. Served as ``uvicorn --factory benchmarks.peers.fastapi_plugins:create``.
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Annotated, Any

import jwt
import structlog
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry, Counter, Histogram, make_asgi_app
from slowapi import Limiter, _rate_limit_exceeded_handler
from slowapi.errors import RateLimitExceeded
from slowapi.util import get_remote_address
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import Response

from benchmarks.catalog import Product, ProductOut
from benchmarks.peers.fastapi_orm import SessionDep, open_database

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Far above what one core can serve in a minute, so the limiter is consulted on
#: every request but never refuses one.
RATE_LIMIT = "100000000/minute"

_WELL_FORMED = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


class _Metrics:
    """The two instruments, in a registry of their own so that factories can run twice."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)


def _route_of(scope: Scope) -> str:
    # The template, not the raw path: one time series per route, not per product id.
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


def access_log_processors() -> list[Any]:
    """structlog's native pipeline (no stdlib logging), as its docs recommend for speed."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.JSONRenderer(),
    ]


def _configure_access_log(path: str) -> Any:
    structlog.configure(
        processors=access_log_processors(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        # Open for the life of the process, like a logging FileHandler.
        logger_factory=structlog.WriteLoggerFactory(file=Path(path).open("a", encoding="utf-8")),  # noqa: SIM115
        cache_logger_on_first_use=True,
    )
    return structlog.get_logger("access")


# --- pure ASGI middleware ---------------------------------------------------------------


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), None
        )
        request_id = incoming if incoming and _WELL_FORMED.fullmatch(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        encoded = request_id.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", encoded)]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            await self.app(scope, receive, send_with_id)


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp, *, log: Any) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            client = scope.get("client")
            self.log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                route=_route_of(scope),
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                client=client[0] if client else None,
            )


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: _Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            self.metrics.observe(
                scope["method"], _route_of(scope), status, time.perf_counter() - started
            )


# --- the same three as BaseHTTPMiddleware, for reference --------------------------------


class RequestIdHTTPMiddleware(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        incoming = request.headers.get("x-request-id")
        request_id = incoming if incoming and _WELL_FORMED.fullmatch(incoming) else uuid.uuid4().hex
        request.state.request_id = request_id
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            response = await call_next(request)
        response.headers["x-request-id"] = request_id
        return response


class AccessLogHTTPMiddleware(BaseHTTPMiddleware):
    def __init__(self, app: ASGIApp, *, log: Any) -> None:
        super().__init__(app)
        self.log = log

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            client = request.client
            self.log.info(
                "request",
                method=request.method,
                path=request.url.path,
                route=_route_of(request.scope),
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                client=client.host if client else None,
            )


class MetricsHTTPMiddleware(BaseHTTPMiddleware):
    def __init__(self, app: ASGIApp, *, metrics: _Metrics) -> None:
        super().__init__(app)
        self.metrics = metrics

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            self.metrics.observe(
                request.method, _route_of(request.scope), status, time.perf_counter() - started
            )


# --- the app ----------------------------------------------------------------------------


# Module level for the same reason as peer (a)'s dependency: FastAPI resolves the
# endpoint's string annotations against this module's globals.
limiter = Limiter(key_func=get_remote_address)
_bearer = HTTPBearer()
_jwt_secret = ""


async def require_token(
    credentials: Annotated[HTTPAuthorizationCredentials, Depends(_bearer)],
) -> dict[str, Any]:
    """The claims of a valid HS256 bearer token; 401 otherwise."""
    try:
        claims: dict[str, Any] = jwt.decode(
            credentials.credentials, _jwt_secret, algorithms=["HS256"]
        )
    except jwt.InvalidTokenError as error:
        raise HTTPException(status_code=401, detail="invalid token") from error
    return claims


ClaimsDep = Annotated[dict[str, Any], Depends(require_token)]


def build(*, db_path: str, log_file: str, jwt_secret: str, base_http_middleware: bool) -> FastAPI:
    """Peer (b) over ``db_path``; ``base_http_middleware`` picks the middleware flavour."""
    global _jwt_secret
    _jwt_secret = jwt_secret
    open_database(db_path)
    access_log = _configure_access_log(log_file)
    metrics = _Metrics()

    api = FastAPI(title="peer (b): FastAPI + ORM + usual plugins")
    api.state.limiter = limiter
    api.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]
    api.mount("/metrics", make_asgi_app(registry=metrics.registry))

    @api.get("/api/v1/products/{product_id}", response_model=ProductOut)
    @limiter.limit(RATE_LIMIT)
    def get_product(
        request: Request, product_id: int, session: SessionDep, claims: ClaimsDep
    ) -> Product:
        product = session.get(Product, product_id)
        if product is None:
            raise HTTPException(status_code=404, detail="product not found")
        return product

    # add_middleware wraps from the inside out: the last added is the outermost, so
    # the request id is bound before the access log line and the metrics are taken.
    if base_http_middleware:
        api.add_middleware(MetricsHTTPMiddleware, metrics=metrics)
        api.add_middleware(AccessLogHTTPMiddleware, log=access_log)
        api.add_middleware(RequestIdHTTPMiddleware)
    else:
        api.add_middleware(MetricsMiddleware, metrics=metrics)
        api.add_middleware(AccessLogMiddleware, log=access_log)
        api.add_middleware(RequestIdMiddleware)
    return api


def _from_environment(base_http_middleware: bool) -> FastAPI:
    return build(
        db_path=os.environ["BENCH_DB"],
        log_file=os.environ["BENCH_LOG_FILE"],
        jwt_secret=os.environ["BENCH_JWT_SECRET"],
        base_http_middleware=base_http_middleware,
    )


def create() -> FastAPI:
    """Peer (b) with pure ASGI middleware, configured from ``BENCH_*`` variables."""
    return _from_environment(base_http_middleware=False)


def create_bhm() -> FastAPI:
    """Peer (b) with ``BaseHTTPMiddleware`` middleware (b-bhm), for reference."""
    return _from_environment(base_http_middleware=True)
