"""Serve declared functions as FastAPI routes, with OpenAPI 3.1 and Swagger UI.

FastAPI parses and validates inputs from each function's signature (so ``Query``,
``Path`` and Pydantic bodies work as in FastAPI) and documents them; bastion runs
the function and writes the response itself.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, JSONResponse
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from bastion.errors import BastionError, NotAcceptable
from bastion.functions import FunctionSpec, Invoker
from bastion.http.middleware.idempotency import KEY_HEADER, KEY_PATTERN, UNSAFE_METHODS
from bastion.http.middleware.rate_limit import FunctionLimits
from bastion.http.problems import PROBLEM_JSON, ProblemRenderer
from bastion.http.responses import accepts_json, result_response
from bastion.http.state import header, locale_of, request_id_of, session_of, user_of
from bastion.observability.health import HealthRegistry, health_document
from bastion.observability.metrics import Metrics
from bastion.ratelimit import Limiter
from bastion.settings.sections import Settings

_REQUEST = "bastion_request__"

_PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status", "code", "request_id"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "request_id": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": "string"},
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                },
            },
        },
    },
}


def endpoint_for(
    spec: FunctionSpec,
    invoker: Invoker,
    settings: Settings,
    limits: FunctionLimits | None = None,
) -> Callable[..., Any]:
    """A FastAPI endpoint whose signature is the function's, minus ``ctx``.

    ``limits`` checks the function's own ``rate_limit`` (``None``: rate limiting is off).
    It is checked here, not in the invoker: the limit is per HTTP caller, while
    ``runtime.call`` from actions, hooks and tests must never be refused by it.
    """
    limited = limits if spec.rate_limit else None

    async def endpoint(**kwargs: Any) -> Any:
        request: Request = kwargs.pop(_REQUEST)
        scope = request.scope
        accept = header(scope, b"accept")
        if accept and not accepts_json(accept):
            raise NotAcceptable()
        if spec.idempotency_required and header(scope, b"idempotency-key") is None:
            raise BastionError("idempotency_key_required")
        if limited is not None:
            await limited.check(spec.name, spec.rate_limit, scope)
        result = await invoker.invoke(
            spec,
            kwargs,
            user=user_of(scope),
            locale=locale_of(scope, settings),
            request_id=request_id_of(scope),
            session_data=session.data if (session := session_of(scope)) is not None else None,
            idempotency_key=header(scope, b"idempotency-key"),
        )
        return result_response(spec, result, header(scope, b"if-none-match"))

    parameters = [inspect.Parameter(_REQUEST, inspect.Parameter.KEYWORD_ONLY, annotation=Request)]
    parameters += [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in spec.parameters]
    endpoint.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    endpoint.__name__ = spec.name
    endpoint.__doc__ = spec.fn.__doc__
    return endpoint


def build_api(
    *,
    title: str,
    version: str,
    description: str | None,
    functions: Sequence[FunctionSpec],
    routers: Sequence[tuple[Any, str]],
    prefix: str,
    invoker: Invoker,
    settings: Settings,
    problems: ProblemRenderer,
    health: HealthRegistry,
    lifespan: Any,
    limiter: Limiter | None = None,
    metrics: Metrics | None = None,
) -> FastAPI:
    """The FastAPI application: function routes, mounted routers, health, docs.

    ``limiter`` enforces functions' own rate limits; ``None`` when limiting is off.
    """
    function_limits = FunctionLimits(limiter, metrics) if limiter is not None else None
    api = FastAPI(
        title=title,
        version=version,
        description=description or "",
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    for exc_type in (BastionError, RequestValidationError, HTTPException, Exception):
        api.add_exception_handler(exc_type, problems.handler)

    for spec in functions:
        responses: dict[int | str, dict[str, Any]] = {
            "default": {
                "description": "Error (RFC 9457 problem)",
                "content": {PROBLEM_JSON: {"schema": _PROBLEM_SCHEMA}},
            },
        }
        api.add_api_route(
            prefix + spec.path,
            endpoint_for(spec, invoker, settings, function_limits),
            methods=[spec.method],
            status_code=spec.status_code,
            response_model=spec.response,
            responses=responses,
            name=spec.name,
            operation_id=spec.name,
            summary=spec.summary,
            description=spec.description,
            tags=list(spec.tags) or None,
            openapi_extra=_idempotency_header(spec, settings),
        )
    for router, router_prefix in routers:
        api.include_router(router, prefix=router_prefix)
    _add_health(api, health, settings)
    _add_docs(api, title)
    return api


def _idempotency_header(spec: FunctionSpec, settings: Settings) -> dict[str, Any] | None:
    if not spec.idempotency_required and not (
        settings.idempotency.enabled and spec.method in UNSAFE_METHODS
    ):
        return None
    parameter = {
        "name": KEY_HEADER,
        "in": "header",
        "required": spec.idempotency_required,
        "description": "Run the request at most once: a retry with the same key gets the "
        "stored response with `Idempotent-Replayed: true`.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": KEY_PATTERN},
    }
    return {"parameters": [parameter]}


def _add_health(api: FastAPI, health: HealthRegistry, settings: Settings) -> None:
    version = settings.app.version

    @api.get("/health/live", tags=["operations"], summary="Liveness: the process is serving")
    async def live() -> JSONResponse:
        return JSONResponse({"status": "healthy", "version": version})

    @api.get("/health/ready", tags=["operations"], summary="Readiness: every dependency answers")
    async def ready() -> JSONResponse:
        status, results = await health.run()
        return JSONResponse(
            health_document(status, results, version),
            status_code=503 if status == "unhealthy" else 200,
        )


def _add_docs(api: FastAPI, title: str) -> None:
    # Swagger UI is served from the installed package, not a CDN: /docs must work
    # on a machine with no internet access.
    api.mount("/docs/assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @api.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{title} — API docs",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon-32x32.png",
        )
