"""``HttpClient`` against a real HTTP peer on loopback: retries, time limits, breakers."""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from structlog.testing import capture_logs

from bastion import App
from bastion.errors import ServiceUnavailable, UpstreamFailed, UpstreamTimeout
from bastion.integrations import HttpClient, RedisBreakerStorage
from bastion.settings.sections import IntegrationsSection
from bastion.testing import RuntimeFactory, free_port, live_server
from tests.apps import app


class Peer:
    """A tiny service whose endpoints misbehave on request; it counts every hit per key."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.seen: dict[str, list[float]] = {}
        self.headers: dict[str, dict[str, str]] = {}
        self.app = Starlette(
            routes=[
                Route("/flaky/{key}", self.flaky, methods=["GET", "POST"]),
                Route("/slow/{key}", self.slow),
                Route("/limited/{key}", self.limited),
                Route("/bad/{key}", self.bad),
                Route("/fail/{key}", self.fail),
                Route("/ok/{key}", self.ok),
            ]
        )

    def _hit(self, request: Request) -> tuple[str, int]:
        key = request.path_params["key"]
        self.hits[key] += 1
        self.seen.setdefault(key, []).append(time.monotonic())
        self.headers[key] = dict(request.headers)
        return key, self.hits[key]

    async def flaky(self, request: Request) -> Response:
        _, hit = self._hit(request)
        if hit <= int(request.query_params.get("fail", "1")):
            return Response(status_code=503)
        return JSONResponse({"hit": hit})

    async def slow(self, request: Request) -> Response:
        self._hit(request)
        await anyio.sleep(float(request.query_params.get("s", "1")))
        return JSONResponse({"late": True})

    async def limited(self, request: Request) -> Response:
        _, hit = self._hit(request)
        if hit == 1:
            return Response(status_code=429, headers={"Retry-After": request.query_params["after"]})
        return JSONResponse({"hit": hit})

    async def bad(self, request: Request) -> Response:
        self._hit(request)
        return JSONResponse({"error": "bad"}, status_code=400)

    async def fail(self, request: Request) -> Response:
        self._hit(request)
        return Response(status_code=500)

    async def ok(self, request: Request) -> Response:
        self._hit(request)
        return JSONResponse({"ok": True})


@pytest.fixture(scope="module")
def peer() -> Iterator[tuple[Peer, str]]:
    server = Peer()
    with live_server(server.app) as base_url:
        yield server, base_url


@pytest.fixture
def bastion_app() -> App:
    return app


def settings(**overrides: Any) -> IntegrationsSection:
    values: dict[str, Any] = {"backoff_base_s": 0.01, "timeout_s": 2.0, **overrides}
    return IntegrationsSection(**values)


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    client = HttpClient(settings(breaker_failure_threshold=50))
    try:
        yield client
    finally:
        await client.aclose()


def key() -> str:
    return secrets.token_hex(6)


async def test_retries_until_success_and_propagates_request_id(
    peer: tuple[Peer, str], http: HttpClient
) -> None:
    server, base = peer
    k = key()
    response = await http.get("flaky", f"{base}/flaky/{k}?fail=2", request_id="req-42")
    assert response.status_code == 200
    assert response.json() == {"hit": 3}
    assert server.hits[k] == 3
    assert server.headers[k]["x-request-id"] == "req-42"


async def test_a_post_is_retried_only_with_an_idempotency_key(
    peer: tuple[Peer, str], http: HttpClient
) -> None:
    server, base = peer
    once = key()
    with pytest.raises(UpstreamFailed):
        await http.request("flaky", "POST", f"{base}/flaky/{once}?fail=1")
    assert server.hits[once] == 1, "a POST that may have reached the peer is not repeated"
    keyed = key()
    response = await http.request(
        "flaky", "POST", f"{base}/flaky/{keyed}?fail=1", headers={"Idempotency-Key": keyed}
    )
    assert response.status_code == 200
    assert server.hits[keyed] == 2


async def test_request_id_comes_from_the_logging_context(
    peer: tuple[Peer, str], http: HttpClient
) -> None:
    import structlog

    server, base = peer
    k = key()
    with structlog.contextvars.bound_contextvars(request_id="from-context"):
        await http.get("ok", f"{base}/ok/{k}")
    assert server.headers[k]["x-request-id"] == "from-context"


async def test_a_400_is_returned_as_is_without_retry(
    peer: tuple[Peer, str], http: HttpClient
) -> None:
    server, base = peer
    k = key()
    response = await http.get("bad", f"{base}/bad/{k}")
    assert (response.status_code, response.json()) == (400, {"error": "bad"})
    assert server.hits[k] == 1


async def test_retry_after_is_honoured(peer: tuple[Peer, str], http: HttpClient) -> None:
    server, base = peer
    k = key()
    response = await http.get("limited", f"{base}/limited/{k}?after=1")
    assert response.status_code == 200
    assert server.hits[k] == 2
    first, second = server.seen[k]
    assert second - first >= 0.95


async def test_retry_after_longer_than_the_max_backoff_ends_the_retries(
    peer: tuple[Peer, str],
) -> None:
    _server, base = peer
    client = HttpClient(settings(backoff_max_s=0.5))
    try:
        response = await client.get("limited", f"{base}/limited/{key()}?after=3")
    finally:
        await client.aclose()
    assert response.status_code == 429  # the peer's answer, for the caller to judge


async def test_timeouts_become_504_after_max_attempts(peer: tuple[Peer, str]) -> None:
    server, base = peer
    k = key()
    client = HttpClient(settings(timeout_s=0.2, max_attempts=2))
    try:
        with pytest.raises(UpstreamTimeout) as caught:
            await client.get("slow", f"{base}/slow/{k}?s=0.6")
    finally:
        await client.aclose()
    assert caught.value.error_code == "upstream_timeout"
    assert caught.value.status == 504
    assert server.hits[k] == 2


async def test_5xx_and_connection_errors_become_502(
    peer: tuple[Peer, str], http: HttpClient
) -> None:
    server, base = peer
    k = key()
    with pytest.raises(UpstreamFailed) as caught:
        await http.get("fail", f"{base}/fail/{k}")
    assert (caught.value.error_code, caught.value.status) == ("upstream_failed", 502)
    assert server.hits[k] == 3
    with pytest.raises(UpstreamFailed):
        await http.get("nobody", f"http://127.0.0.1:{free_port()}/")


async def test_retry_budget_stops_retries(peer: tuple[Peer, str]) -> None:
    server, base = peer
    k = key()
    client = HttpClient(settings(retry_budget_ratio=0.0, retry_budget_burst=1))
    try:
        for _ in range(2):
            with pytest.raises(UpstreamFailed):
                await client.get("fail", f"{base}/fail/{k}")
    finally:
        await client.aclose()
    # First call: 1 + the one retry in the budget; second call: no retry left.
    assert server.hits[k] == 3


async def test_breaker_opens_refuses_then_half_opens_and_closes(peer: tuple[Peer, str]) -> None:
    server, base = peer
    k = key()
    client = HttpClient(
        settings(max_attempts=1, breaker_failure_threshold=3, breaker_reset_timeout_s=0.5)
    )
    try:
        for _ in range(3):
            with pytest.raises(UpstreamFailed):
                await client.get("svc", f"{base}/fail/{k}")
        assert (await client.breaker.snapshot("svc")).state == "open"
        with pytest.raises(ServiceUnavailable) as caught:
            await client.get("svc", f"{base}/ok/{k}")
        assert server.hits[k] == 3  # refused without calling the peer
        assert caught.value.status == 503
        assert caught.value.error_code == "service_unavailable"
        assert caught.value.headers["Retry-After"] == "1"

        await anyio.sleep(0.55)
        # Half-open: a failed trial opens it again at once.
        with pytest.raises(UpstreamFailed):
            await client.get("svc", f"{base}/fail/{k}")
        assert server.hits[k] == 4
        with pytest.raises(ServiceUnavailable):
            await client.get("svc", f"{base}/ok/{k}")

        await anyio.sleep(0.55)
        # A successful trial closes it.
        assert (await client.get("svc", f"{base}/ok/{k}")).status_code == 200
        assert (await client.breaker.snapshot("svc")).state == "closed"
        assert (await client.get("svc", f"{base}/ok/{k}")).status_code == 200
        assert server.hits[k] == 6
    finally:
        await client.aclose()


async def test_half_open_lets_one_trial_through(peer: tuple[Peer, str]) -> None:
    _server, base = peer
    k = key()
    client = HttpClient(
        settings(max_attempts=1, breaker_failure_threshold=1, breaker_reset_timeout_s=0.3)
    )
    try:
        with pytest.raises(UpstreamFailed):
            await client.get("one", f"{base}/fail/{k}")
        await anyio.sleep(0.35)
        outcomes: list[str] = []

        async def call() -> None:
            try:
                await client.get("one", f"{base}/slow/{k}?s=0.2")
                outcomes.append("called")
            except ServiceUnavailable:
                outcomes.append("refused")

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(call)
        assert sorted(outcomes) == ["called", "refused", "refused"]
    finally:
        await client.aclose()


@pytest.mark.redis
async def test_redis_breaker_is_shared_by_two_processes(
    peer: tuple[Peer, str], redis_url: str
) -> None:
    server, base = peer
    k = key()
    prefix = f"bastion:breaker:test-{k}:"
    options = settings(max_attempts=1, breaker_failure_threshold=2, breaker_reset_timeout_s=0.4)
    first = HttpClient(options, storage=RedisBreakerStorage(redis_url, prefix=prefix))
    second = HttpClient(options, storage=RedisBreakerStorage(redis_url, prefix=prefix))
    try:
        with pytest.raises(UpstreamFailed):
            await first.get("shared", f"{base}/fail/{k}")
        with pytest.raises(UpstreamFailed):
            await second.get("shared", f"{base}/fail/{k}")
        # Two failures from two processes reached the threshold of one breaker.
        for client in (first, second):
            with pytest.raises(ServiceUnavailable):
                await client.get("shared", f"{base}/ok/{k}")
        assert server.hits[k] == 2
        await anyio.sleep(0.45)
        assert (await second.get("shared", f"{base}/ok/{k}")).status_code == 200
        assert (await first.breaker.snapshot("shared")).state == "closed"
        assert (await first.get("shared", f"{base}/ok/{k}")).status_code == 200
    finally:
        await first.aclose()
        await second.aclose()


async def test_redis_down_fails_open_with_a_warning(peer: tuple[Peer, str]) -> None:
    server, base = peer
    k = key()
    client = HttpClient(
        settings(max_attempts=1, breaker_storage="redis", breaker_failure_threshold=1),
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
    )
    try:
        with capture_logs() as logs:
            with pytest.raises(UpstreamFailed):
                await client.get("down", f"{base}/fail/{k}")
            response = await client.get("down", f"{base}/ok/{k}")
    finally:
        await client.aclose()
    assert response.status_code == 200
    assert server.hits[k] == 2
    warnings = [e for e in logs if e["event"] == "breaker_unavailable"]
    assert warnings
    assert all(e["log_level"] == "warning" for e in warnings)


def test_redis_storage_needs_a_redis_url() -> None:
    with pytest.raises(ValueError, match="needs \\[redis\\] url"):
        HttpClient(settings(breaker_storage="redis"))


async def test_the_runtime_has_a_configured_http_client(make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime(integrations={"max_attempts": 2, "timeout_s": 4})
    assert isinstance(runtime.http, HttpClient)
    assert runtime.http.retry.max_attempts == 2
    assert runtime.http.settings.timeout_s == 4
    await runtime.shutdown()
    assert runtime.http._client.is_closed
