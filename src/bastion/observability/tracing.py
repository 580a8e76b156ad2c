"""OpenTelemetry traces: one tracer provider per runtime, and the trace context helpers.

The provider is never installed as OpenTelemetry's global one: a process may hold many
runtimes (tests build one per test), each with its own exporter and sampling, and
instrumentations get it passed explicitly. What stays global is OpenTelemetry's *context*
(a contextvar), so a span started by one layer is the parent of spans started below it,
on worker threads too (anyio copies the context into them).

Correlation: :func:`bound_trace_ids` puts ``trace_id`` and ``span_id`` into every log
line (next to ``request_id``); :func:`current_traceparent` is what a job row keeps, and
:func:`context_from_traceparent` turns it back into the parent of the job's span.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, NoOpTracer, Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from bastion.settings.sections import TracingSection

if TYPE_CHECKING:
    import httpx
    from sqlalchemy.engine import Engine

__all__ = [
    "Tracing",
    "bound_trace_ids",
    "context_from_traceparent",
    "current_trace_id",
    "current_traceparent",
    "record_failure",
]

INSTRUMENTATION = "bastion"
# Always W3C, whatever OTEL_PROPAGATORS says: job rows must be readable by every process.
_W3C = TraceContextTextMapPropagator()


class Tracing:
    """``runtime.tracing``: the runtime's tracer provider, tracer and exporter.

    Args:
        settings: The ``[tracing]`` section.
        service_name: ``service.name`` when the section names none (the app's name).
        service_version: ``service.version`` (``app.version``).
        environment: ``deployment.environment`` (``env``).

    Attributes:
        tracer: Starts bastion's own spans; a no-op tracer when tracing is off.
        exporter: The span exporter (an ``InMemorySpanExporter`` with ``exporter = "memory"``,
            so tests read ``runtime.tracing.exporter.get_finished_spans()``); ``None`` when
            nothing is exported.
    """

    def __init__(
        self,
        settings: TracingSection,
        *,
        service_name: str,
        service_version: str = "0.0.0",
        environment: str = "development",
    ) -> None:
        self.settings = settings
        self.enabled = settings.enabled
        self.exporter: SpanExporter | None = None
        self.provider: TracerProvider | None = None
        self.tracer: Tracer = NoOpTracer()
        self._engine_listeners: list[tuple[Any, str, Any]] = []
        self._shut_down = False
        if not self.enabled:
            return
        self.provider = TracerProvider(
            sampler=_Sampler(settings.sample_ratio),
            resource=Resource.create(
                {
                    "service.name": settings.service_name or service_name,
                    "service.version": service_version,
                    "deployment.environment": environment,
                }
            ),
        )
        self.exporter = _exporter(settings)
        if self.exporter is not None:
            self.provider.add_span_processor(_processor(settings.exporter, self.exporter))
        self.tracer = self.provider.get_tracer(INSTRUMENTATION)

    def instrument_engines(self, engines: Iterable[Engine]) -> None:
        """Trace every statement the engines run (a client span each, under the caller's)."""
        if self.provider is None:
            return
        # EngineTracer, not SQLAlchemyInstrumentor: the instrumentor is a process-wide
        # singleton that also patches create_engine for everyone.
        from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
        from opentelemetry.metrics import NoOpMeterProvider

        tracer = self.provider.get_tracer("opentelemetry.instrumentation.sqlalchemy")
        usage = (
            NoOpMeterProvider()
            .get_meter(INSTRUMENTATION)
            .create_up_down_counter("db.client.connections.usage")
        )
        known = len(EngineTracer._remove_event_listener_params)
        for engine in engines:
            EngineTracer(tracer, engine, usage)  # type: ignore[no-untyped-call]
        # Moved out of the class-wide list (emptied only by uninstrumenting every engine
        # in the process at once) so that this runtime's shutdown removes its own.
        self._engine_listeners += EngineTracer._remove_event_listener_params[known:]
        del EngineTracer._remove_event_listener_params[known:]

    def instrument_httpx(self, client: httpx.AsyncClient) -> None:
        """Trace the client's requests (a client span each) and send ``traceparent``."""
        if self.provider is None:
            return
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor.instrument_client(client, tracer_provider=self.provider)

    def shutdown(self) -> None:
        """Export what is buffered, then stop; the runtime calls it at its shutdown."""
        from sqlalchemy import event

        for target, identifier, listener in self._engine_listeners:
            engine = target()
            if engine is not None and event.contains(engine, identifier, listener):
                event.remove(engine, identifier, listener)
        self._engine_listeners.clear()
        if self.provider is not None and not self._shut_down:
            self._shut_down = True
            self.provider.force_flush(int(self.settings.otlp_timeout_s * 1000))
            self.provider.shutdown()


class _Sampler(Sampler):
    """``ParentBased(TraceIdRatioBased(ratio))``, except that a client span (a SQL statement,
    an outbound call) never starts a trace of its own.

    Those are the worker's polling and leases, health probes, migrations: a trace each
    would bury the ones worth reading, at a cost to every poll.
    """

    def __init__(self, ratio: float) -> None:
        self._ratio = ParentBased(TraceIdRatioBased(ratio))

    def should_sample(
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if kind is SpanKind.CLIENT and not (
            trace.get_current_span(parent_context).get_span_context().is_valid
        ):
            return SamplingResult(Decision.DROP)
        return self._ratio.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"InTraceClients{{{self._ratio.get_description()}}}"  # type: ignore[no-untyped-call]


def _exporter(settings: TracingSection) -> SpanExporter | None:
    if settings.exporter == "memory":
        return InMemorySpanExporter()
    if settings.exporter == "console":
        return ConsoleSpanExporter(service_name=settings.service_name)
    if settings.exporter == "otlp":
        try:
            # Imported here: the exporter (and protobuf) is the optional ``otlp`` extra.
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as error:
            raise RuntimeError(
                "tracing.exporter = 'otlp' needs the OTLP exporter: pip install 'bastion[otlp]'"
            ) from error
        return OTLPSpanExporter(
            endpoint=settings.otlp_endpoint,
            headers={
                name: value.get_secret_value() for name, value in settings.otlp_headers.items()
            },
            timeout=settings.otlp_timeout_s,
        )
    return None


def _processor(kind: str, exporter: SpanExporter) -> SpanProcessor:
    # Tests read spans the moment they end; anything that leaves the process is
    # batched on the SDK's thread so the request path never waits on the collector.
    if kind == "memory":
        return SimpleSpanProcessor(exporter)
    return BatchSpanProcessor(exporter)


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, or ``None`` outside any trace."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier.get("traceparent")


def current_trace_id() -> str | None:
    """The current trace's id as 32 hex digits, or ``None`` outside any trace."""
    span_context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(span_context.trace_id) if span_context.is_valid else None


def context_from_traceparent(traceparent: str | None) -> otel_context.Context | None:
    """The context whose span is the remote parent ``traceparent`` names (``None`` when it
    names none or is malformed: the span then starts a trace of its own)."""
    if not traceparent:
        return None
    extracted = _W3C.extract({"traceparent": traceparent})
    return extracted if trace.get_current_span(extracted).get_span_context().is_valid else None


@contextmanager
def bound_trace_ids(span: Span) -> Iterator[None]:
    """Put ``span``'s ``trace_id`` and ``span_id`` into every log line written inside."""
    span_context = span.get_span_context()
    if not span_context.is_valid:
        yield
        return
    with structlog.contextvars.bound_contextvars(
        trace_id=trace.format_trace_id(span_context.trace_id),
        span_id=trace.format_span_id(span_context.span_id),
    ):
        yield


def record_failure(span: Span, error: BaseException) -> None:
    """Mark ``span`` failed by ``error`` (its type and message as an exception event)."""
    if span.is_recording():
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"[:200]))
