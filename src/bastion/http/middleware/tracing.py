"""A server span per HTTP request, continuing the caller's trace when it sends one."""

from __future__ import annotations

from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from bastion.http.middleware.status import StatusWatch
from bastion.http.state import request_id_of
from bastion.observability.tracing import bound_trace_ids, context_from_traceparent, record_failure
from bastion.types import ASGIApp, Receive, Scope, Send


class TracingMiddleware:
    """Wrap each request in a ``SERVER`` span named ``METHOD /route/template``.

    A well-formed incoming ``traceparent`` makes the span its child (the caller's sampling
    decision included). The span's trace and span ids are bound into every log line of the
    request, next to the request id. The status is the final response's: this sits
    outside the error middleware, so a 500 it writes counts (the problem renderer records
    the exception on this span).

    Args:
        skip: Paths never traced: probes and scrapes (health checks, ``/metrics``) that
            would make a trace every few seconds, each saying nothing.
    """

    def __init__(self, app: ASGIApp, *, tracer: Tracer, skip: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.tracer = tracer
        self.skip = skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.skip:
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        headers = _headers(scope)
        parent = context_from_traceparent(headers.get("traceparent"))
        watch = StatusWatch(send)

        with (
            self.tracer.start_as_current_span(
                method,
                context=parent,
                kind=SpanKind.SERVER,
                attributes=_request_attributes(scope, method, headers),
                # Recorded here, with the status, rather than by the SDK's generic handler.
                record_exception=False,
                set_status_on_exception=False,
            ) as span,
            bound_trace_ids(span),
        ):
            try:
                await self.app(scope, receive, watch)
            except Exception as error:
                record_failure(span, error)
                raise
            finally:
                if span.is_recording():
                    route: Any = scope.get("route")
                    template = getattr(route, "path", None)
                    if template:
                        # The template, never the raw path: span names are grouped on.
                        span.update_name(f"{method} {template}")
                        span.set_attribute("http.route", template)
                    span.set_attribute("http.response.status_code", watch.code)
                    if watch.code >= 500:
                        span.set_status(Status(StatusCode.ERROR))


def _headers(scope: Scope) -> dict[str, str]:
    wanted = {}
    for name, value in scope.get("headers", ()):
        if name in (b"traceparent", b"user-agent"):
            wanted[name.decode("latin-1")] = value.decode("latin-1")
    return wanted


def _request_attributes(scope: Scope, method: str, headers: dict[str, str]) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "url.path": scope["path"],
        "url.scheme": scope.get("scheme", "http"),
        "network.protocol.version": scope.get("http_version", "1.1"),
        "bastion.request_id": request_id_of(scope),
    }
    # No url.query: query strings may carry tokens (signed URLs, OAuth codes).
    client = scope.get("client")
    if client:
        attributes["client.address"] = client[0]
    server = scope.get("server")
    if server:
        attributes["server.address"] = server[0]
        if server[1] is not None:
            attributes["server.port"] = server[1]
    if "user-agent" in headers:
        attributes["user_agent.original"] = headers["user-agent"][:256]
    return attributes
