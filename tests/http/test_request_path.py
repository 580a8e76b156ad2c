"""The request path: request ids, access log, errors, limits, compression, health, docs."""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest
from sqlalchemy import select

from bastion import App, Runtime, load_settings
from bastion.db import ErrorLogEntry
from bastion.observability import configure_logging
from bastion.testing import BastionClient, RuntimeFactory
from tests.apps import app


@pytest.fixture
def bastion_app() -> App:
    return app


@pytest.fixture
async def production(
    make_runtime: RuntimeFactory,
) -> AsyncIterator[tuple[Runtime, BastionClient]]:
    runtime = make_runtime(env="production", environ={"BASTION_APP_SECRET_KEY": "p" * 40})
    await runtime.startup()
    async with BastionClient(runtime.asgi()) as client:
        yield runtime, client


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    configure_logging(fmt="json", env="production")
    yield capsys
    configure_logging()


def _lines(capfd: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    out, err = capfd.readouterr()
    return [json.loads(line) for line in (out + err).splitlines() if line.startswith("{")]


async def test_a_well_formed_request_id_is_echoed_and_a_bad_one_replaced(
    client: BastionClient,
) -> None:
    echoed = await client.get("/api/v1/notes/count", headers={"X-Request-ID": "req-123.abc"})
    assert echoed.headers["x-request-id"] == "req-123.abc"
    replaced = await client.get("/api/v1/notes/count", headers={"X-Request-ID": "bad id\n{json}"})
    assert replaced.headers["x-request-id"] != "bad id\n{json}"
    assert len(replaced.headers["x-request-id"]) == 32
    generated = await client.get("/health/live")
    assert len(generated.headers["x-request-id"]) == 32


async def test_one_access_log_line_per_request_with_route_and_request_id(
    make_runtime: RuntimeFactory, json_logs: pytest.CaptureFixture[str]
) -> None:
    runtime = make_runtime(log={"access_log": True})
    async with BastionClient(runtime.asgi()) as client:
        await client.get("/api/v1/notes/41", headers={"X-Request-ID": "trace-me"})
    access = [line for line in _lines(json_logs) if line.get("event") == "request"]
    assert len(access) == 1
    line = access[0]
    assert (line["route"], line["path"], line["status"], line["request_id"], line["method"]) == (
        "/api/v1/notes/{note_id}",
        "/api/v1/notes/41",
        404,
        "trace-me",
        "GET",
    )
    assert isinstance(line["duration_ms"], float)


async def test_production_hides_internals_logs_the_error_and_records_it(
    production: tuple[Runtime, BastionClient], json_logs: pytest.CaptureFixture[str]
) -> None:
    runtime, client = production
    response = await client.get("/plain/boom", headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500
    problem = response.json()
    assert problem["code"] == "internal_error"
    assert "hunter2" not in response.text
    assert "RuntimeError" not in response.text
    assert "exception" not in problem
    logged = [line for line in _lines(json_logs) if line.get("event") == "unhandled_exception"]
    assert len(logged) == 1
    assert logged[0]["request_id"] == "boom-1"
    assert "hunter2" not in json.dumps(logged[0]), "secrets are scrubbed from logs"
    with runtime.database.read_transaction() as session:
        entry = session.scalars(select(ErrorLogEntry)).one()
    assert (entry.code, entry.status, entry.route, entry.request_id) == (
        "internal_error",
        500,
        "/plain/boom",
        "boom-1",
    )
    assert entry.data is not None
    assert "hunter2" not in json.dumps(entry.data)


async def test_production_hides_a_query_write_attempt_detail(
    production: tuple[Runtime, BastionClient],
) -> None:
    _runtime, client = production
    response = await client.get("/api/v1/sneaky/orm")
    assert response.status_code == 500
    assert "read-only" not in response.text


async def test_configured_4xx_codes_are_written_to_the_error_log(
    make_runtime: RuntimeFactory,
) -> None:
    runtime = make_runtime(errors={"log_codes": ["not_found"]})
    async with BastionClient(runtime.asgi()) as client:
        await client.get("/api/v1/notes/404")
        await client.get("/api/v1/notes/abc")
    with runtime.database.read_transaction() as session:
        assert [e.code for e in session.scalars(select(ErrorLogEntry))] == ["not_found"]


async def test_an_unreachable_error_log_does_not_turn_one_error_into_two(
    production: tuple[Runtime, BastionClient], caplog: pytest.LogCaptureFixture
) -> None:
    runtime, client = production
    with runtime.database.transaction() as session:
        session.execute(ErrorLogEntry.__table__.delete())
    from sqlalchemy import text

    with runtime.database.transaction() as session:
        session.execute(text("DROP TABLE bastion_error_log"))
    response = await client.get("/plain/boom")
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"


async def test_streamed_bodies_over_the_limit_are_refused(make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime(server={"max_body_bytes": 2048})

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b'{"text": "' + b"x" * 500

    async with BastionClient(runtime.asgi()) as client:
        response = await client.post(
            "/api/v1/notes", content=chunks(), headers={"content-type": "application/json"}
        )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert response.json()["detail"] == "The request body is larger than the limit of 2048 bytes."


async def test_large_responses_are_gzipped(client: BastionClient) -> None:
    response = await client.get("/openapi.json", headers={"Accept-Encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    small = await client.get("/health/live", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in small.headers


async def test_cache_control_and_etag_follow_the_declaration(client: BastionClient) -> None:
    response = await client.get("/api/v1/notes/count")
    assert response.headers["cache-control"] == "public, max-age=5"
    assert response.headers["etag"].startswith('"')
    created = await client.post("/api/v1/notes", json={"text": "x"})
    assert "etag" not in created.headers


async def test_plain_routers_share_the_request_path(client: BastionClient) -> None:
    response = await client.get("/plain/ping")
    assert response.json() == {"pong": "yes"}
    assert "x-request-id" in response.headers


async def test_health_ready_reports_each_check(client: BastionClient, runtime: Runtime) -> None:
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "healthy"
    assert body["checks"][0]["name"] == "database"
    assert body["checks"][0]["healthy"] is True
    assert {"version", "timestamp"} <= set(body)

    async def hanging() -> None:
        await anyio.sleep(10)

    async def broken() -> None:
        raise ConnectionError("gateway refused")

    runtime.health.add("gateway", broken, critical=False)
    degraded = await client.get("/health/ready")
    assert (degraded.status_code, degraded.json()["status"]) == (200, "degraded")
    runtime.health.add("search", hanging, timeout_s=0.05)
    unhealthy = await client.get("/health/ready")
    assert unhealthy.status_code == 503
    checks = {c["name"]: c for c in unhealthy.json()["checks"]}
    assert checks["search"]["error"] == "timed out after 0.05s"
    assert checks["gateway"]["error"] == "ConnectionError: gateway refused"
    live = await client.get("/health/live")
    assert live.status_code == 200


async def test_health_ready_is_503_when_the_database_is_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.CRITICAL)
    settings = load_settings(
        None,
        environ={},
        overrides={
            "database": {"url": "postgresql://nobody@127.0.0.1:1/none"},
            "health": {"timeout_s": 3},
        },
    )
    runtime = app.runtime(settings)
    async with BastionClient(runtime.asgi()) as client:
        response = await client.get("/health/ready")
        assert response.status_code == 503
        assert response.json()["checks"][0]["healthy"] is False
        failed = await client.get("/api/v1/notes/count")
        assert failed.status_code == 503
        assert failed.json()["code"] == "database_unavailable"
        assert failed.headers["retry-after"] == "1"


async def test_docs_render_from_local_assets_and_openapi_is_3_1(client: BastionClient) -> None:
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "/docs/assets/swagger-ui-bundle.js" in docs.text
    assert "cdn" not in docs.text
    asset = await client.get("/docs/assets/swagger-ui-bundle.js")
    assert asset.status_code == 200
    assert len(asset.content) > 100_000
    schema = (await client.get("/openapi.json")).json()
    assert schema["openapi"].startswith("3.1")
    operation = schema["paths"]["/api/v1/notes/{note_id}"]["get"]
    assert operation["operationId"] == "get_note"
    assert "application/problem+json" in operation["responses"]["default"]["content"]


async def test_gzip_response_is_valid(client: BastionClient) -> None:
    chunks = []
    async with client.stream("GET", "/openapi.json", headers={"Accept-Encoding": "gzip"}) as raw:
        assert raw.headers["content-encoding"] == "gzip"
        async for chunk in raw.aiter_raw():
            chunks.append(chunk)
    compressed = b"".join(chunks)
    assert compressed[:2] == b"\x1f\x8b"
    assert json.loads(gzip.decompress(compressed))["openapi"].startswith("3.1")


async def test_production_health_shows_only_the_type_of_a_failure(
    production: tuple[Runtime, BastionClient],
) -> None:
    runtime, client = production

    async def broken() -> None:
        raise ConnectionError("db-internal.example:5432 refused")

    runtime.health.add("gateway", broken)
    checks = {c["name"]: c for c in (await client.get("/health/ready")).json()["checks"]}
    assert checks["gateway"]["error"] == "ConnectionError"
