"""Spans of requests, functions, SQL, outbound calls, jobs and workflow steps; sampling,
exporters and their failures; the ``[tracing]`` settings."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import anyio.to_thread
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bastion import App, Runtime
from bastion.db.tables import ErrorLogEntry
from bastion.settings import SettingsError, load_settings
from bastion.testing import (
    BastionClient,
    RuntimeFactory,
    free_port,
    live_server,
    run_worker_until,
    workflow_is,
    workflow_timeline,
)
from tests.observability.traced_app import PEER, SETTINGS, Peer, app, fulfil, serving_peer


@pytest.fixture
def bastion_app() -> App:
    return app


@pytest.fixture
def bastion_settings_overrides() -> dict[str, Any]:
    return SETTINGS


@pytest.fixture
def peer() -> Iterator[Peer]:
    with serving_peer() as served:
        yield served


CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


def finished(runtime: Runtime) -> Sequence[ReadableSpan]:
    exporter = runtime.tracing.exporter
    assert isinstance(exporter, InMemorySpanExporter)
    return exporter.get_finished_spans()


def named(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    matches = [span for span in spans if span.name == name]
    assert len(matches) == 1, f"{name!r}: {[s.name for s in spans]}"
    return matches[0]


def children(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in spans if parent_id(s) == parent.context.span_id]


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def trace_hex(span: ReadableSpan) -> str:
    return f"{span.context.trace_id:032x}"


async def test_a_request_is_a_server_span_over_its_function_and_its_sql(
    runtime: Runtime, client: BastionClient
) -> None:
    await client.post("/api/v1/orders", params={"order": "o-1"})
    runtime.tracing.exporter.clear()  # type: ignore[union-attr]

    response = await client.get("/api/v1/notes/o-1")

    assert response.status_code == 200
    spans = finished(runtime)
    request = named(spans, "GET /api/v1/notes/{order}")
    assert request.kind is SpanKind.SERVER
    assert request.parent is None
    attributes = dict(request.attributes or {})
    assert attributes["http.request.method"] == "GET"
    assert attributes["http.route"] == "/api/v1/notes/{order}"
    assert attributes["url.path"] == "/api/v1/notes/o-1"
    assert attributes["http.response.status_code"] == 200
    assert attributes["bastion.request_id"] == response.headers["x-request-id"]
    assert request.status.status_code is StatusCode.UNSET

    function = named(spans, "notes")
    assert parent_id(function) == request.context.span_id
    assert dict(function.attributes or {}) == {
        "bastion.function.name": "notes",
        "bastion.function.kind": "query",
    }
    sql = [s for s in children(spans, function) if s.kind is SpanKind.CLIENT]
    assert sql, "no SQL span under the query"
    statements = [str((s.attributes or {}).get("db.statement", "")) for s in sql]
    assert any("trace_notes" in statement for statement in statements)
    assert {trace_hex(s) for s in spans} == {trace_hex(request)}


async def test_an_incoming_traceparent_makes_the_request_part_of_the_callers_trace(
    runtime: Runtime, client: BastionClient
) -> None:
    response = await client.get(
        "/api/v1/notes/none", headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
    )

    assert response.status_code == 404
    request = named(finished(runtime), "GET /api/v1/notes/{order}")
    assert trace_hex(request) == CALLER_TRACE
    assert f"{parent_id(request):016x}" == CALLER_SPAN
    assert request.parent is not None
    assert request.parent.is_remote
    # A 404 is an answer: neither the request nor the function failed.
    assert request.status.status_code is StatusCode.UNSET
    assert named(finished(runtime), "notes").status.status_code is StatusCode.UNSET


async def test_a_malformed_traceparent_starts_a_trace_of_its_own(
    runtime: Runtime, client: BastionClient
) -> None:
    await client.get("/api/v1/notes/none", headers={"traceparent": "00-zz-not-a-trace"})

    request = named(finished(runtime), "GET /api/v1/notes/{order}")
    assert request.parent is None


async def test_a_500_marks_the_spans_failed_and_its_error_row_carries_the_trace_id(
    runtime: Runtime, client: BastionClient
) -> None:
    response = await client.post("/api/v1/boom", json={})

    assert response.status_code == 500
    spans = finished(runtime)
    request = named(spans, "POST /api/v1/boom")
    assert request.status.status_code is StatusCode.ERROR
    assert dict(request.attributes or {})["http.response.status_code"] == 500
    assert [e.name for e in request.events] == ["exception"]
    assert "flux capacitor" in str((request.events[0].attributes or {})["exception.message"])
    function = named(spans, "boom")
    assert function.status.status_code is StatusCode.ERROR
    with runtime.database.read_transaction() as session:
        row = session.scalars(select(ErrorLogEntry)).one()
    assert row.trace_id == trace_hex(request)
    assert row.request_id == response.headers["x-request-id"]


async def test_an_unmatched_path_is_named_by_its_method_only(
    runtime: Runtime, client: BastionClient
) -> None:
    await client.get("/api/v1/no/such/thing")

    (request,) = finished(runtime)
    # Raw paths would make one span name per URL ever requested.
    assert request.name == "GET"
    assert dict(request.attributes or {})["http.response.status_code"] == 404


async def test_probes_and_scrapes_are_not_traced(runtime: Runtime, client: BastionClient) -> None:
    for path in ("/health/live", "/health/ready", "/metrics"):
        assert (await client.get(path)).status_code == 200, path

    assert finished(runtime) == ()


async def test_a_job_run_continues_the_trace_of_the_request_that_enqueued_it(
    runtime: Runtime, client: BastionClient, peer: Peer
) -> None:
    response = await client.post("/api/v1/orders", params={"order": "o-2"})
    workflow_id = response.json()

    await run_worker_until(runtime, workflow_is(runtime, workflow_id, "succeeded"))

    spans = finished(runtime)
    mutation = named(spans, "place_order")
    job = named(spans, "bastion.workflow")
    assert job.kind is SpanKind.CONSUMER
    assert parent_id(job) == mutation.context.span_id
    attributes = dict(job.attributes or {})
    assert attributes["messaging.destination.name"] == "workflows"
    assert attributes["bastion.job.attempt"] == 1
    record = named(spans, "step record")
    notify = named(spans, "step notify")
    for step in (record, notify):
        assert parent_id(step) == job.context.span_id
    assert dict(notify.attributes or {})["bastion.workflow.id"] == workflow_id
    # The step's SQL and its outbound call sit under the step.
    assert any(s.kind is SpanKind.CLIENT for s in children(spans, record))
    (call,) = [s for s in children(spans, notify) if s.name == "POST"]
    assert call.kind is SpanKind.CLIENT
    assert dict(call.attributes or {})["http.status_code"] == 200  # the old semconv names
    header = peer.received[0]["traceparent"]
    assert header.split("-")[1:3] == [trace_hex(call), f"{call.context.span_id:016x}"]
    assert {trace_hex(s) for s in spans} == {trace_hex(mutation)}


async def test_a_failing_step_and_the_compensation_it_causes_are_spans_of_the_run(
    runtime: Runtime, client: BastionClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nobody listens there: the notify step fails for good, and record is compensated.
    monkeypatch.setitem(PEER, "url", f"http://127.0.0.1:{free_port()}")
    response = await client.post("/api/v1/orders", params={"order": "o-3"})
    workflow_id = response.json()

    await run_worker_until(runtime, workflow_is(runtime, workflow_id, "compensated"), limit_s=20)

    spans = finished(runtime)
    job = named(spans, "bastion.workflow")
    notify = named(spans, "step notify")
    assert notify.status.status_code is StatusCode.ERROR
    assert [e.name for e in notify.events] == ["exception"]
    undo = named(spans, "step compensate:record")
    assert parent_id(undo) == job.context.span_id
    assert undo.status.status_code is StatusCode.UNSET


async def test_statements_on_a_read_replica_are_traced_too(
    make_runtime: RuntimeFactory, bastion_database_url: str
) -> None:
    if not bastion_database_url.startswith("postgresql"):
        pytest.skip("read replicas are PostgreSQL only")
    # The test database stands in for its own replica: what matters is which engine ran.
    runtime = make_runtime(database={"replica_urls": [bastion_database_url]})
    async with BastionClient(runtime.asgi()) as client:
        await client.post("/api/v1/orders", params={"order": "o-8"})
        runtime.tracing.exporter.clear()  # type: ignore[union-attr]
        assert (await client.get("/api/v1/notes/o-8")).status_code == 200

    spans = finished(runtime)
    sql = [s for s in children(spans, named(spans, "notes")) if s.kind is SpanKind.CLIENT]
    assert any("trace_notes" in str((s.attributes or {}).get("db.statement")) for s in sql)


async def test_sample_ratio_zero_records_nothing_and_serves_as_usual(
    make_runtime: RuntimeFactory,
) -> None:
    runtime = make_runtime(tracing={"sample_ratio": 0.0})
    await runtime.startup()
    async with BastionClient(runtime.asgi()) as client:
        placed = await client.post("/api/v1/orders", params={"order": "o-4"})
        listed = await client.get("/api/v1/notes/o-4")

    assert placed.status_code == 201
    assert listed.status_code == 200
    assert finished(runtime) == ()


async def test_a_sampled_caller_is_followed_even_with_sample_ratio_zero(
    make_runtime: RuntimeFactory,
) -> None:
    runtime = make_runtime(tracing={"sample_ratio": 0.0})
    async with BastionClient(runtime.asgi()) as client:
        await client.get(
            "/api/v1/notes/x", headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
        )

    assert {trace_hex(s) for s in finished(runtime)} == {CALLER_TRACE}


async def test_tracing_off_means_no_spans_and_no_trace_context_on_jobs(
    make_runtime: RuntimeFactory,
) -> None:
    runtime = make_runtime(tracing={"enabled": False})
    async with BastionClient(runtime.asgi()) as client:
        response = await client.post("/api/v1/orders", params={"order": "o-5"})

    assert response.status_code == 201
    assert runtime.tracing.exporter is None
    job = runtime.jobs.store.list()[0]
    assert job.trace_context is None
    assert job.request_id == response.headers["x-request-id"]


async def test_spans_reach_an_otlp_collector_with_the_configured_headers(
    make_runtime: RuntimeFactory,
) -> None:
    received: list[tuple[dict[str, str], bytes]] = []

    async def collect(request: Request) -> Response:
        received.append((dict(request.headers), await request.body()))
        return Response(status_code=200)

    collector = Starlette(routes=[Route("/v1/traces", collect, methods=["POST"])])
    with live_server(collector) as url:
        runtime = make_runtime(
            tracing={
                "exporter": "otlp",
                "otlp_endpoint": f"{url}/v1/traces",
                "otlp_headers": {"x-api-key": "k-123"},
                "service_name": "shop-api",
            }
        )
        async with BastionClient(runtime.asgi()) as client:
            await client.get("/api/v1/notes/none")
        await runtime.shutdown()  # exports the batch

    names: set[str] = set()
    for headers, body in received:
        assert headers["x-api-key"] == "k-123"
        export = ExportTraceServiceRequest.FromString(body)
        for resource_spans in export.resource_spans:
            service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            assert service["service.name"] == "shop-api"
            names |= {s.name for scope in resource_spans.scope_spans for s in scope.spans}
    assert {"GET /api/v1/notes/{order}", "notes"} <= names


async def test_an_unreachable_collector_does_not_break_requests(
    make_runtime: RuntimeFactory,
) -> None:
    runtime = make_runtime(
        tracing={
            "exporter": "otlp",
            "otlp_endpoint": f"http://127.0.0.1:{free_port()}/v1/traces",
            "otlp_timeout_s": 0.5,
        }
    )
    await runtime.startup()
    async with BastionClient(runtime.asgi()) as client:
        for order in ("o-6", "o-7"):
            response = await client.post("/api/v1/orders", params={"order": order})
            assert response.status_code == 201
        assert (await client.get("/api/v1/notes/o-6")).status_code == 200

    # Shutdown tries to export what is left, gives up after the time limit, and stops.
    await runtime.shutdown()


async def test_a_job_enqueued_outside_any_trace_keeps_no_trace_context(runtime: Runtime) -> None:
    def start() -> str:
        with runtime.database.transaction() as session:
            return fulfil.start(session, id="fulfil:bare", order="bare")

    workflow_id = await anyio.to_thread.run_sync(start)
    (job,) = runtime.jobs.store.list()
    assert (job.trace_context, job.request_id) == (None, None)
    assert workflow_timeline(runtime, workflow_id).workflow.trace_context is None


@pytest.mark.parametrize(
    ("tracing", "message"),
    [
        ({"exporter": "zipkin"}, "tracing.exporter"),
        ({"sample_ratio": 1.5}, "tracing.sample_ratio"),
        ({"otlp_endpoint": "collector:4318"}, "tracing.otlp_endpoint"),
        ({"exporters": "otlp"}, "tracing.exporters"),
    ],
)
def test_bad_tracing_settings_are_refused_with_the_key_named(
    tracing: dict[str, Any], message: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(None, environ={}, overrides={"tracing": tracing})

    assert message in str(refused.value)
