"""One request id and one trace id link an HTTP request, its mutation, the workflow job it
enqueued, the workflow's steps and the step's call to another service (issue #6)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from structlog.testing import capture_logs

from bastion import App, Runtime
from bastion.testing import BastionClient, job_row, run_worker_until, workflow_is
from tests.observability.traced_app import SETTINGS, Peer, app, serving_peer


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


async def test_one_request_id_and_trace_id_link_request_mutation_job_step_and_outbound_call(
    runtime: Runtime, client: BastionClient, peer: Peer
) -> None:
    request_id = "order-7-checkout"
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        response = await client.post(
            "/api/v1/orders", params={"order": "o-7"}, headers={"X-Request-ID": request_id}
        )
        workflow_id = response.json()
        await run_worker_until(runtime, workflow_is(runtime, workflow_id, "succeeded"))

    assert response.status_code == 201
    exporter = runtime.tracing.exporter
    assert isinstance(exporter, InMemorySpanExporter)
    spans = {span.name: span for span in exporter.get_finished_spans()}
    request = spans["POST /api/v1/orders"]
    trace_id = f"{request.context.trace_id:032x}"

    # The spans: one trace, from the request down to the outbound call.
    for name in ("place_order", "bastion.workflow", "step record", "step notify", "POST"):
        assert f"{spans[name].context.trace_id:032x}" == trace_id, name
    assert spans["bastion.workflow"].kind is SpanKind.CONSUMER
    assert spans["POST"].kind is SpanKind.CLIENT
    assert dict(request.attributes or {})["bastion.request_id"] == request_id

    # The peer got both ids with the call.
    (received,) = peer.received
    assert received["traceparent"].split("-")[1] == trace_id
    assert received["x-request-id"] == request_id

    # The rows: the workflow and the job that ran it keep both.
    timeline = runtime.workflows.get(workflow_id)
    assert timeline is not None
    assert timeline.workflow.request_id == request_id
    assert (timeline.workflow.trace_context or "").split("-")[1] == trace_id
    (job,) = [j for j in runtime.jobs.store.list() if j.name == "bastion.workflow"]
    row = job_row(runtime, job.id)
    assert row.request_id == request_id
    assert (row.trace_context or "").split("-")[1] == trace_id

    # The logs: the request's lines and the job run's lines carry both ids.
    def line(event: str) -> dict[str, Any]:
        (found,) = [entry for entry in logs if entry["event"] == event]
        return found

    for event in ("order placed", "request", "peer notified", "workflow succeeded"):
        entry = line(event)
        assert entry["request_id"] == request_id, event
        assert entry["trace_id"] == trace_id, event
    # Each line names the span it was written in: the job's differs from the request's.
    assert line("order placed")["span_id"] == f"{request.context.span_id:016x}"
    assert line("peer notified")["span_id"] == f"{spans['bastion.workflow'].context.span_id:016x}"
