"""``GET /metrics``: the exposition, parsed with prometheus-client's own parser, counts
exactly what the test did; its protection; one scrape sums several server processes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bastion import App, Runtime
from bastion.settings import SettingsError, load_settings
from bastion.testing import BastionClient, free_port, job_is, run_worker_until
from bastion.testing.plugin import RuntimeFactory
from tests.observability.apps import ATTEMPTS, app
from tests.support.servers import bastion_server

ITEMS = "/api/v1/items/{item_id}"


@pytest.fixture
def bastion_app() -> App:
    return app


@pytest.fixture
def bastion_settings_overrides() -> dict[str, Any]:
    return {
        "jobs": {"poll_interval_s": 0.05},
        "cache": {"enabled": True},
        "integrations": {"max_attempts": 1, "breaker_failure_threshold": 2},
    }


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of the exposition by name and labels (the official parser)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, metric: str, /, **labels: str) -> float | None:
    return samples.get((metric, frozenset(labels.items())))


def total(samples: Samples, metric: str, /, **labels: str) -> float:
    """The sum over the samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == metric and wanted <= ls)


async def test_the_exposition_counts_what_the_requests_jobs_and_breakers_did(
    client: BastionClient, runtime: Runtime
) -> None:
    statuses = [
        (await client.get(path)).status_code
        for path in (
            "/api/v1/items/1",
            "/api/v1/items/2",
            "/api/v1/items/500",
            "/api/v1/items/abc",
            "/nowhere/at/all",
            "/api/v1/boom",
            "/api/v1/scarce",
            "/api/v1/scarce",
            "/api/v1/scarce",
            "/api/v1/cached",
            "/api/v1/cached",
        )
    ]
    assert statuses == [200, 200, 404, 422, 404, 500, 200, 200, 429, 200, 200]
    assert (await client.request("BREW", "/api/v1/items/1")).status_code == 405
    ATTEMPTS.clear()
    ids = (await client.post("/api/v1/jobs")).json()
    assert (await client.post("/api/v1/order")).status_code == 200
    closed = f"http://127.0.0.1:{free_port()}/"
    peer = [
        (await client.post("/api/v1/call-peer", params={"url": closed})).status_code
        for _ in range(3)
    ]
    assert peer == [502, 502, 503]  # the third is refused by the open breaker
    await run_worker_until(
        runtime,
        lambda: (
            all(job_is(runtime, ids[name], "succeeded")() for name in ("fine", "flaky", "patient"))
            and job_is(runtime, ids["doomed"], "dead")()
        ),
    )

    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples = parse(response.text)

    requests = "bastion_http_requests_total"
    assert value(samples, requests, route=ITEMS, method="GET", status="200") == 2
    assert value(samples, requests, route=ITEMS, method="GET", status="404") == 1
    assert value(samples, requests, route=ITEMS, method="GET", status="422") == 1
    assert value(samples, requests, route="<unmatched>", method="GET", status="404") == 1
    assert value(samples, requests, route="/api/v1/boom", method="GET", status="500") == 1
    assert value(samples, requests, route="/api/v1/scarce", method="GET", status="200") == 2
    assert value(samples, requests, route="/api/v1/scarce", method="GET", status="429") == 1
    assert value(samples, requests, route="/api/v1/call-peer", method="POST", status="503") == 1
    # Scrapes are not requests of the app; raw paths never become labels.
    # Unknown methods share one label value.
    assert value(samples, requests, route=ITEMS, method="OTHER", status="405") == 1
    assert total(samples, requests) == 17
    assert not any("/nowhere" in str(labels) or "/metrics" in str(labels) for _, labels in samples)
    duration = "bastion_http_request_duration_seconds"
    assert value(samples, f"{duration}_count", route=ITEMS, method="GET") == 4
    assert value(samples, f"{duration}_bucket", route=ITEMS, method="GET", le="+Inf") == 4
    assert value(samples, "bastion_http_requests_in_progress") == 0

    assert value(samples, "bastion_rate_limit_hits_total", scope="function") == 1
    assert value(samples, "bastion_cache_requests_total", result="miss") == 1
    assert value(samples, "bastion_cache_requests_total", result="hit") == 1

    assert value(samples, "bastion_jobs_enqueued_total", queue="work", job="fine") == 1
    assert value(samples, "bastion_jobs_enqueued_total", queue="work", job="doomed") == 1
    runs = "bastion_job_runs_total"
    assert value(samples, runs, queue="work", job="fine", outcome="succeeded") == 1
    assert value(samples, runs, queue="work", job="doomed", outcome="dead") == 1
    assert value(samples, runs, queue="work", job="flaky", outcome="failed") == 1
    assert value(samples, runs, queue="work", job="flaky", outcome="succeeded") == 1
    assert value(samples, runs, queue="work", job="patient", outcome="retried") == 1
    assert value(samples, runs, queue="work", job="patient", outcome="succeeded") == 1
    assert total(samples, runs, queue="work") == 6
    assert value(samples, "bastion_job_duration_seconds_count", queue="work", job="fine") == 1
    assert value(samples, "bastion_jobs", queue="work", status="succeeded") == 3
    assert value(samples, "bastion_jobs", queue="work", status="dead") == 1
    assert value(samples, "bastion_job_queue_lag_seconds", queue="work") == 0

    steps = "bastion_workflow_steps_total"
    assert value(samples, steps, workflow="order", step="reserve", outcome="succeeded") == 1
    assert value(samples, "bastion_workflows", status="succeeded") == 1

    assert value(samples, "bastion_circuit_breaker_state", name="peer") == 2
    assert (
        value(samples, "bastion_circuit_breaker_transitions_total", name="peer", state="open") == 1
    )
    assert value(samples, "bastion_realtime_connections") == 0
    assert (
        value(samples, "bastion_db_pool_connections", state="in_use", database="primary")
        is not None
    )


async def test_workflow_steps_are_counted_by_outcome(
    client: BastionClient, runtime: Runtime
) -> None:
    ATTEMPTS.clear()
    assert (await client.post("/api/v1/doomed-order")).status_code == 500
    samples = parse((await client.get("/metrics")).text)
    steps = "bastion_workflow_steps_total"
    assert value(samples, steps, workflow="doomed_order", step="wobbly", outcome="retried") == 1
    assert value(samples, steps, workflow="doomed_order", step="wobbly", outcome="succeeded") == 1
    assert value(samples, steps, workflow="doomed_order", step="broken", outcome="failed") == 1
    assert value(samples, steps, workflow="doomed_order", step="wobbly", outcome="compensated") == 1
    assert value(samples, "bastion_workflows", status="compensated") == 1


async def test_a_breaker_that_recovers_reports_half_open_then_closed(
    runtime: Runtime,
) -> None:
    breaker = runtime.http.breaker
    breaker.reset_timeout_s = 0.0  # the next call after opening is the trial
    await breaker.failure("svc")
    await breaker.failure("svc")
    assert await breaker.allow("svc") is None
    samples = parse(runtime.metrics.exposition().decode())
    assert value(samples, "bastion_circuit_breaker_state", name="svc") == 1
    await breaker.success("svc")
    samples = parse(runtime.metrics.exposition().decode())
    assert value(samples, "bastion_circuit_breaker_state", name="svc") == 0
    transitions = "bastion_circuit_breaker_transitions_total"
    assert [
        value(samples, transitions, name="svc", state=s) for s in ("open", "half_open", "closed")
    ] == [1, 1, 1]


async def test_the_global_rate_limit_counts_its_429s(make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime(ratelimit={"default_limits": ["1/minute"]})
    async with BastionClient(runtime.asgi()) as client:
        assert (await client.get("/api/v1/items/1")).status_code == 200
        assert (await client.get("/api/v1/items/2")).status_code == 429
        samples = parse((await client.get("/metrics")).text)
    # Refused before routing, still counted under the route it was for.
    assert (
        value(samples, "bastion_http_requests_total", route=ITEMS, method="GET", status="429") == 1
    )
    assert value(samples, "bastion_rate_limit_hits_total", scope="ip") == 1


async def test_a_token_protects_the_exposition(make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime(metrics={"token": "s3cret-scraper"})
    async with BastionClient(runtime.asgi()) as client:
        missing = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        right = await client.get("/metrics", headers={"Authorization": "Bearer s3cret-scraper"})
    for refused in (missing, wrong):
        assert refused.status_code == 401
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["code"] == "not_authenticated"
    assert right.status_code == 200
    assert "bastion_http_requests" in right.text


async def test_an_address_allow_list_protects_the_exposition(make_runtime: RuntimeFactory) -> None:
    allowed = make_runtime(metrics={"allow_ips": ["127.0.0.0/8"]})
    refused = make_runtime(metrics={"allow_ips": ["10.0.0.0/8"]})
    async with BastionClient(allowed.asgi()) as client:
        assert (await client.get("/metrics")).status_code == 200
    async with BastionClient(refused.asgi()) as client:
        response = await client.get("/metrics")
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


async def test_the_path_is_configurable_and_the_exposition_can_be_off(
    make_runtime: RuntimeFactory,
) -> None:
    moved = make_runtime(metrics={"path": "/internal/metrics"})
    off = make_runtime(metrics={"enabled": False})
    async with BastionClient(moved.asgi()) as client:
        assert (await client.get("/internal/metrics")).status_code == 200
        assert (await client.get("/metrics")).status_code == 404
        schema = (await client.get("/openapi.json")).json()
    assert not any("metrics" in path for path in schema["paths"])
    async with BastionClient(off.asgi()) as client:
        assert (await client.get("/metrics")).status_code == 404


def test_bad_metrics_settings_are_refused() -> None:
    with pytest.raises(SettingsError, match="allow_ips"):
        load_settings(None, overrides={"metrics": {"allow_ips": ["not-a-network"]}})
    with pytest.raises(SettingsError, match="path"):
        load_settings(None, overrides={"metrics": {"path": "metrics"}})


async def test_an_unreachable_database_leaves_the_rest_of_the_scrape(
    make_runtime: RuntimeFactory,
) -> None:
    runtime = make_runtime(database={"url": "postgresql://nobody@127.0.0.1:1/none"})
    samples = parse(runtime.metrics.exposition().decode())
    names = {name for name, _ in samples}
    assert not names & {"bastion_jobs", "bastion_job_queue_lag_seconds", "bastion_workflows"}
    assert value(samples, "bastion_http_requests_in_progress") == 0


def test_one_scrape_sums_every_server_process(tmp_path: Path) -> None:
    # Not a database test: the counts under test live in the processes' files (the
    # database families are left out of the scrape, as no migrations ran here).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BASTION_", "PYTEST_"))}
    env.update(
        BASTION_APP="tests.observability.apps:app",
        BASTION_DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}",
        BASTION_SERVER_WORKERS="2",
        BASTION_SERVER_GRACEFUL_SHUTDOWN_S="1",
        BASTION_JOBS_EMBEDDED_WORKER="false",
        BASTION_METRICS_MULTIPROCESS_DIR=str(tmp_path / "metrics"),
    )
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "counter_99999.db").write_bytes(b"stale")
    with bastion_server(env, tmp_path / "server.log") as url:
        # No keep-alive: each request is a new connection, which either process may accept.
        with httpx.Client(base_url=url, limits=httpx.Limits(max_keepalive_connections=0)) as http:
            answered: list[int] = []
            while len(set(answered)) < 2:
                assert len(answered) < 500, "one process answered every request"
                answered.append(http.get("/pid").json())
            scrapes = [parse(http.get("/metrics").text) for _ in range(4)]
        pids = {path.name.rsplit("_", 1)[1] for path in (tmp_path / "metrics").glob("counter_*.db")}
    assert "99999.db" not in pids  # the stale file of an earlier run was wiped
    assert len(pids) == 2
    for samples in scrapes:
        assert value(
            samples,
            "bastion_http_requests_total",
            route="/pid",
            method="GET",
            status="200",
        ) == len(answered)
