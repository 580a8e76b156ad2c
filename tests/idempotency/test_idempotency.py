"""Idempotency-Key: one execution per caller and key, replays, conflicts, expiry, races."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx
import pytest
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from typer.testing import CliRunner

from bastion import App, Context, Principal, Runtime, load_settings
from bastion.cli.main import cli
from bastion.errors import RateLimited
from bastion.idempotency import IdempotencyRecord, InProgress, Proceed, Replay, StoredResponse
from bastion.testing import BastionClient, Clock, IdentityInjector, RuntimeFactory
from bastion.types import ASGIApp


class Base(DeclarativeBase):
    pass


class Charge(Base):
    __tablename__ = "charges"

    id: Mapped[int] = mapped_column(primary_key=True)
    amount_cents: Mapped[int]


class ChargeIn(BaseModel):
    amount_cents: int = Field(gt=0)
    delay_s: float = Field(0, ge=0, le=2)


class ChargeOut(BaseModel):
    id: int
    amount_cents: int


class Count(BaseModel):
    charges: int


app = App("idempotent", metadata=Base.metadata)
router = APIRouter()
#: Executions per function, rolled-back ones included.
runs: Counter[str] = Counter()


def _charge(ctx: Context, body: ChargeIn) -> Charge:
    charge = Charge(amount_cents=body.amount_cents)
    ctx.session.add(charge)
    ctx.session.flush()
    return charge


@app.mutation("/charges")
def create_charge(ctx: Context, body: ChargeIn) -> ChargeOut:
    runs["create_charge"] += 1
    return _charge(ctx, body)  # type: ignore[return-value]


@app.mutation("/checkout", require_idempotency_key=True)
def checkout(ctx: Context, body: ChargeIn) -> ChargeOut:
    runs["checkout"] += 1
    return _charge(ctx, body)  # type: ignore[return-value]


@app.mutation("/flaky")
def flaky(ctx: Context, body: ChargeIn) -> ChargeOut:
    runs["flaky"] += 1
    charge = _charge(ctx, body)
    if runs["flaky"] == 1:
        raise RuntimeError("the first attempt fails after writing")
    return charge  # type: ignore[return-value]


@app.action("/slow-charges", status_code=201)
async def slow_charge(ctx: Context, body: ChargeIn) -> ChargeOut:
    # Waits on the event loop, holding no lock, so duplicates arrive while it runs.
    await anyio.sleep(body.delay_s)
    result: ChargeOut = await ctx.services.call(create_charge, body=body)
    return result


@app.action("/busy")
async def busy(ctx: Context) -> None:
    runs["busy"] += 1
    if runs["busy"] == 1:
        raise RateLimited(30)


@app.action("/notify")
async def notify(ctx: Context) -> None:
    runs["notify"] += 1


@app.query("/charges/count")
def count_charges(ctx: Context) -> Count:
    return Count(charges=ctx.session.scalar(select(func.count()).select_from(Charge)) or 0)


@router.post("/plain/orders")
async def plain_order() -> JSONResponse:
    runs["plain_order"] += 1
    number = runs["plain_order"]
    return JSONResponse(
        {"order": number}, status_code=201, headers={"Location": f"/plain/orders/{number}"}
    )


app.include_router(router)


@pytest.fixture
def bastion_app() -> App:
    return app


@pytest.fixture(autouse=True)
def _fresh_counts() -> Iterator[None]:
    runs.clear()
    yield
    runs.clear()


def key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


def charges(runtime: Runtime) -> int:
    with runtime.database.read_transaction() as session:
        return session.scalar(select(func.count()).select_from(Charge)) or 0


def records(runtime: Runtime) -> int:
    with runtime.database.read_transaction() as session:
        return session.scalar(select(func.count()).select_from(IdempotencyRecord)) or 0


async def test_a_retry_gets_the_stored_response_and_runs_nothing(
    client: BastionClient, runtime: Runtime
) -> None:
    first = await client.post("/api/v1/charges", json={"amount_cents": 500}, headers=key("k-1"))
    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    again = await client.post("/api/v1/charges", json={"amount_cents": 500}, headers=key("k-1"))
    assert again.status_code == 201
    assert again.content == first.content
    assert again.headers["content-type"] == first.headers["content-type"]
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["x-request-id"] != first.headers["x-request-id"], "a response of its own"
    assert (runs["create_charge"], charges(runtime)) == (1, 1)


async def test_client_errors_are_stored_and_replayed_too(client: BastionClient) -> None:
    first = await client.post("/api/v1/charges", json={"amount_cents": -1}, headers=key("bad"))
    assert first.status_code == 422
    again = await client.post("/api/v1/charges", json={"amount_cents": -1}, headers=key("bad"))
    assert (again.status_code, again.headers["idempotent-replayed"]) == (422, "true")
    assert again.json() == first.json()


async def test_no_content_and_location_are_replayed(client: BastionClient) -> None:
    notified = [await client.post("/api/v1/notify", headers=key("n")) for _ in range(2)]
    assert [r.status_code for r in notified] == [204, 204]
    assert notified[1].headers["idempotent-replayed"] == "true"
    assert "content-length" not in notified[1].headers
    assert runs["notify"] == 1
    ordered = [await client.post("/plain/orders", headers=key("o")) for _ in range(2)]
    assert [r.headers["location"] for r in ordered] == ["/plain/orders/1"] * 2
    assert ordered[1].json() == {"order": 1}
    assert ordered[1].headers["content-type"] == "application/json"
    assert runs["plain_order"] == 1


@pytest.mark.parametrize(
    ("path", "body", "query"),
    [
        ("/api/v1/charges", {"amount_cents": 501}, ""),
        ("/api/v1/charges", {"amount_cents": 500}, "?note=other"),
        ("/api/v1/checkout", {"amount_cents": 500}, ""),
    ],
    ids=["other-body", "other-query", "other-path"],
)
async def test_the_same_key_for_another_request_is_422(
    client: BastionClient, runtime: Runtime, path: str, body: dict[str, int], query: str
) -> None:
    await client.post("/api/v1/charges", json={"amount_cents": 500}, headers=key("k-2"))
    reused = await client.post(
        path + query, json=body, headers={**key("k-2"), "Accept-Language": "es"}
    )
    assert reused.status_code == 422
    assert reused.json()["code"] == "idempotency_key_reused"
    assert reused.json()["title"] == "Clave de idempotencia reutilizada"
    assert charges(runtime) == 1


@pytest.mark.parametrize(
    "value",
    [b"", b"two words", b"x" * 256, b"caf\xe9"],
    ids=["empty", "space", "too-long", "not-ascii"],
)
async def test_an_invalid_key_is_400_and_runs_nothing(
    client: BastionClient, runtime: Runtime, value: bytes
) -> None:
    response = await client.post(
        "/api/v1/charges", json={"amount_cents": 5}, headers={"Idempotency-Key": value}
    )
    assert response.status_code == 400
    assert response.json()["code"] == "idempotency_key_invalid"
    assert (runs["create_charge"], records(runtime)) == (0, 0)


async def test_a_key_of_255_visible_characters_is_accepted(client: BastionClient) -> None:
    value = "".join(chr(c) for c in range(0x21, 0x7F)) * 3
    response = await client.post(
        "/api/v1/charges", json={"amount_cents": 5}, headers=key(value[:255])
    )
    assert response.status_code == 201


async def test_a_function_can_require_a_key(client: BastionClient, runtime: Runtime) -> None:
    missing = await client.post("/api/v1/checkout", json={"amount_cents": 900})
    assert missing.status_code == 400
    assert missing.json()["code"] == "idempotency_key_required"
    assert records(runtime) == 0
    given = await client.post("/api/v1/checkout", json={"amount_cents": 900}, headers=key("c"))
    assert given.status_code == 201
    assert runs["checkout"] == 1


async def test_openapi_documents_the_header(client: BastionClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]

    def header_of(path: str, method: str) -> dict[str, Any] | None:
        parameters = paths[path][method].get("parameters", [])
        return next((p for p in parameters if p["name"] == "Idempotency-Key"), None)

    required = header_of("/api/v1/checkout", "post")
    assert required is not None
    assert (required["in"], required["required"]) == ("header", True)
    assert required["schema"]["maxLength"] == 255
    optional = header_of("/api/v1/charges", "post")
    assert optional is not None
    assert optional["required"] is False
    assert header_of("/api/v1/charges/count", "get") is None


def test_a_get_cannot_require_a_key() -> None:
    with pytest.raises(TypeError, match="unsafe methods"):

        @app.action("/never", method="GET", require_idempotency_key=True)
        async def never(ctx: Context) -> None: ...


async def test_server_errors_are_not_stored_so_a_retry_runs_again(
    client: BastionClient, runtime: Runtime
) -> None:
    failed = await client.post("/api/v1/flaky", json={"amount_cents": 5}, headers=key("f"))
    assert failed.status_code == 500
    assert (charges(runtime), records(runtime)) == (0, 0)
    retried = await client.post("/api/v1/flaky", json={"amount_cents": 5}, headers=key("f"))
    assert retried.status_code == 201
    assert "idempotent-replayed" not in retried.headers
    replayed = await client.post("/api/v1/flaky", json={"amount_cents": 5}, headers=key("f"))
    assert replayed.headers["idempotent-replayed"] == "true"
    assert (runs["flaky"], charges(runtime)) == (2, 1)


async def test_a_429_is_not_stored_so_a_retry_runs_again(client: BastionClient) -> None:
    limited = await client.post("/api/v1/busy", headers=key("b"))
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "30")
    retried = await client.post("/api/v1/busy", headers=key("b"))
    assert retried.status_code == 204
    assert "idempotent-replayed" not in retried.headers
    assert runs["busy"] == 2


async def test_keys_expire_after_a_day_and_are_purged(
    client: BastionClient, runtime: Runtime, clock: Clock
) -> None:
    await client.post("/api/v1/charges", json={"amount_cents": 5}, headers=key("e"))
    clock.shift(hours=23, minutes=59)
    replayed = await client.post("/api/v1/charges", json={"amount_cents": 5}, headers=key("e"))
    assert replayed.headers["idempotent-replayed"] == "true"
    assert runtime.idempotency.purge_expired(clock.now()) == 0
    clock.shift(minutes=1)
    # Expired: ignored, so even another request may now use the key.
    fresh = await client.post("/api/v1/charges", json={"amount_cents": 6}, headers=key("e"))
    assert fresh.status_code == 201
    assert "idempotent-replayed" not in fresh.headers
    assert runs["create_charge"] == 2
    clock.shift(hours=24)
    assert runtime.idempotency.purge_expired(clock.now()) == 1
    assert records(runtime) == 0


async def test_the_purge_command_prints_the_count(
    client: BastionClient, bastion_database_url: str, clock: Clock
) -> None:
    for name in ("a", "b"):
        await client.post("/api/v1/notify", headers=key(name))
    clock.shift(days=2)
    result = CliRunner().invoke(
        cli,
        ["idempotency", "purge", f"{__name__}:app"],
        env={"BASTION_DATABASE_URL": bastion_database_url},
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "purged 2 expired idempotency keys"


def caller(asgi: ASGIApp, address: str, user: Principal | None = None) -> httpx.AsyncClient:
    """A client from ``address``, authenticated as ``user`` when given."""
    identity = IdentityInjector(asgi)
    identity.principal = user
    transport = httpx.ASGITransport(app=identity, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def test_keys_belong_to_one_caller(runtime: Runtime) -> None:
    asgi = runtime.asgi()
    body = {"amount_cents": 1}
    async with caller(asgi, "198.51.100.1") as one, caller(asgi, "198.51.100.2") as two:
        first = await one.post("/api/v1/charges", json=body, headers=key("same"))
        second = await two.post("/api/v1/charges", json={"amount_cents": 2}, headers=key("same"))
    assert (first.status_code, second.status_code) == (201, 201)
    assert "idempotent-replayed" not in second.headers
    address = "198.51.100.1"
    async with caller(asgi, address, Principal("u-1")) as mine:
        mine_reply = await mine.post("/api/v1/notify", headers=key("same"))
    async with caller(asgi, address, Principal("u-2")) as theirs:
        their_reply = await theirs.post("/api/v1/notify", headers=key("same"))
    assert "idempotent-replayed" not in mine_reply.headers
    assert "idempotent-replayed" not in their_reply.headers
    assert (runs["create_charge"], runs["notify"]) == (2, 2)


async def test_a_user_keeps_their_keys_across_addresses(runtime: Runtime) -> None:
    asgi = runtime.asgi()
    replies = []
    for address in ("198.51.100.1", "203.0.113.9"):
        async with caller(asgi, address, Principal("u-1")) as http:
            replies.append(await http.post("/api/v1/notify", headers=key("k")))
    assert replies[1].headers["idempotent-replayed"] == "true"
    assert runs["notify"] == 1


async def test_safe_methods_ignore_the_header(client: BastionClient) -> None:
    for value in ("k", "not a valid key"):
        response = await client.get("/api/v1/charges/count", headers=key(value))
        assert response.status_code == 200
        assert "idempotent-replayed" not in response.headers


async def test_the_middleware_can_be_switched_off(make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime(idempotency={"enabled": False})
    async with BastionClient(runtime.asgi()) as client:
        for _ in range(2):
            response = await client.post("/api/v1/notify", headers=key("k"))
            assert "idempotent-replayed" not in response.headers
        missing = await client.post("/api/v1/checkout", json={"amount_cents": 1})
    assert runs["notify"] == 2
    assert missing.json()["code"] == "idempotency_key_required", "a required key stays required"


async def test_a_crashed_request_s_key_is_taken_over_after_its_lease(runtime: Runtime) -> None:
    store = runtime.idempotency
    start = datetime(2030, 1, 1, tzinfo=UTC)
    crashed = store.begin("ip:1", "k", "fp", start)
    assert isinstance(crashed, Proceed)
    assert isinstance(store.begin("ip:1", "k", "fp", start + timedelta(seconds=59)), InProgress)
    taken = store.begin("ip:1", "k", "fp", start + timedelta(seconds=60))
    assert isinstance(taken, Proceed)
    assert taken.lease > crashed.lease
    late = StoredResponse(201, (), b"late")
    assert store.complete("ip:1", "k", crashed.lease, late) is False, "its claim is gone"
    store.abandon("ip:1", "k", crashed.lease)
    assert store.complete("ip:1", "k", taken.lease, StoredResponse(201, (), b"mine")) is True
    replay = store.begin("ip:1", "k", "fp", start + timedelta(seconds=61))
    assert isinstance(replay, Replay)
    assert replay.response.body == b"mine"


async def test_of_many_concurrent_claims_one_wins(runtime: Runtime) -> None:
    now = datetime.now(UTC)
    outcomes: list[object] = []

    async def claim() -> None:
        begin = runtime.idempotency.begin
        outcomes.append(await anyio.to_thread.run_sync(begin, "ip:1", "k", "fp", now))

    async with anyio.create_task_group() as group:
        for _ in range(20):
            group.start_soon(claim)
    assert sum(isinstance(o, Proceed) for o in outcomes) == 1
    assert sum(isinstance(o, InProgress) for o in outcomes) == 19


async def test_concurrent_duplicates_never_both_run(
    live_url: str, make_runtime: RuntimeFactory
) -> None:
    body = {"amount_cents": 700, "delay_s": 0.5}
    responses: list[httpx.Response] = []

    async with httpx.AsyncClient(base_url=live_url, timeout=30) as http:

        async def send() -> None:
            response = await http.post("/api/v1/slow-charges", json=body, headers=key("race"))
            responses.append(response)

        async with anyio.create_task_group() as group:
            for _ in range(20):
                group.start_soon(send)
        after = await http.post("/api/v1/slow-charges", json=body, headers=key("race"))

    originals = [
        r for r in responses if r.status_code == 201 and "idempotent-replayed" not in r.headers
    ]
    assert len(originals) == 1
    busy = [r for r in responses if r.status_code == 409]
    assert busy, "the duplicates overlapped the first request"
    for response in busy:
        assert response.json()["code"] == "idempotency_in_progress"
        assert response.headers["retry-after"] == "1"
    for response in responses:
        if response.status_code == 201:
            assert response.content == originals[0].content
    assert len(busy) + sum(r.status_code == 201 for r in responses) == 20
    assert after.headers["idempotent-replayed"] == "true"
    assert after.content == originals[0].content
    assert charges(make_runtime()) == 1


@pytest.fixture
async def database_down(caplog: pytest.LogCaptureFixture) -> AsyncIterator[Runtime]:
    caplog.set_level(logging.CRITICAL)
    settings = load_settings(
        None,
        environ={},
        overrides={"database": {"url": "postgresql://nobody@127.0.0.1:1/none"}},
    )
    runtime = app.runtime(settings)
    yield runtime
    await runtime.shutdown()


async def test_without_the_store_a_keyed_request_is_refused_and_not_run(
    database_down: Runtime,
) -> None:
    async with BastionClient(database_down.asgi()) as client:
        refused = await client.post("/api/v1/notify", headers=key("k"))
        unkeyed = await client.post("/api/v1/notify")
    assert refused.status_code == 503
    assert refused.json()["code"] == "database_unavailable"
    assert refused.headers["retry-after"] == "1"
    assert unkeyed.status_code == 204, "requests without a key do not need the store"
    assert runs["notify"] == 1
