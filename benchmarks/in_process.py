"""In-process measurements (no sockets, no HTTP parsing): where a request's time goes.

Two modes, each printing one ``BENCH_JSON`` line for benchmarks/request_path.py:

``rows DB``
    One row by primary key, done every way a target does it: the bare sqlite3
    driver, SQLAlchemy Core, ``Session.get`` in a new session, the same plus the
    Pydantic round trip, and bastion's read transaction and invoker. Then the
    per-request pieces outside the query: an access-log line (bastion's and peer
    (b)'s), a hop to the thread pool, a request id, an ETag. Microseconds per
    item, median of batches.

``asgi DB --factory module:attr``
    The target's ASGI app called directly with a synthetic ``GET`` scope, once
    one request at a time (latency) and once with 16 in flight (throughput). The
    difference to the HTTP numbers is what the server (uvicorn, httptools,
    sockets) costs.

The runner starts each mode in its own process, pinned like the servers, because
bastion and peer (b) both configure structlog process-wide.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, create_engine, select
from sqlalchemy.orm import Session

from benchmarks.catalog import COLUMNS, PRODUCTS, Product, ProductOut

_BATCH = 200


Batch = Callable[[list[int]], object]


def _each(operation: Callable[[int], object]) -> Batch:
    def run(batch: list[int]) -> None:
        for product_id in batch:
            operation(product_id)

    return run


def _time_per_op(run_batch: Batch, ids: list[int], seconds: float) -> tuple[float, float]:
    """Microseconds per item of ``run_batch``, wall clock and process CPU.

    Each is the median over batches of 200, the first batch discarded. CPU time
    counts every thread of the process and none of the time spent waiting for the
    core, so it stays put when other work shares the machine; wall time does not.
    """
    wall: list[float] = []
    cpu: list[float] = []
    position = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(wall) < 6:
        batch = ids[position : position + _BATCH]
        position = (position + _BATCH) % (len(ids) - _BATCH)
        started, started_cpu = time.perf_counter(), time.process_time()
        run_batch(batch)
        wall.append((time.perf_counter() - started) / len(batch) * 1e6)
        cpu.append((time.process_time() - started_cpu) / len(batch) * 1e6)
    return statistics.median(wall[1:]), statistics.median(cpu[1:])


def _event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # uvicorn falls back to asyncio too
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def measure_rows(db_path: str, *, seconds: float, products: int) -> list[dict[str, Any]]:
    """One row by primary key, by each access path the targets use."""
    from bastion import load_settings
    from bastion.db.database import Database
    from benchmarks.apps.bastion_app import app

    rng = random.Random(7)
    ids = [rng.randint(1, products) for _ in range(20_000)]
    cases: list[tuple[str, str, Batch]] = []

    raw = sqlite3.connect(db_path, check_same_thread=False)
    sql = f"SELECT {', '.join(COLUMNS)} FROM products WHERE id = ?"
    cases.append(
        (
            "sqlite3: execute + fetchone",
            "peer (c)'s query, one long-lived connection",
            _each(lambda i: raw.execute(sql, (i,)).fetchone()),
        )
    )

    def raw_json(i: int) -> object:
        row = raw.execute(sql, (i,)).fetchone()
        body = dict(zip(COLUMNS, row, strict=True))
        body["is_active"] = bool(body["is_active"])
        body["created_at"] = body["created_at"].replace(" ", "T", 1)
        return json.dumps(body, separators=(",", ":"))

    cases.append(("sqlite3 + dict + json.dumps", "peer (c)'s whole handler body", _each(raw_json)))

    engine = create_engine(f"sqlite:///{db_path}", connect_args={"check_same_thread": False})
    table = Product.__table__
    statement = select(table).where(table.c.id == bindparam("product_id"))

    def core(i: int) -> object:
        with engine.connect() as connection:
            return connection.execute(statement, {"product_id": i}).one()

    cases.append(("Core: connect + select().where(id)", "pool checkout per call", _each(core)))

    def orm_get(i: int) -> object:
        with Session(engine) as session:
            return session.get(Product, i)

    cases.append(
        ("ORM: new Session + session.get", "peer (a)'s query, one session per call", _each(orm_get))
    )

    def orm_pydantic(i: int) -> object:
        with Session(engine) as session:
            product = session.get(Product, i)
            return ProductOut.model_validate(product).model_dump_json()

    cases.append(
        (
            "ORM + ProductOut validate + dump_json",
            "peer (a)'s work minus FastAPI",
            _each(orm_pydantic),
        )
    )

    settings = load_settings(
        None,
        env="production",
        environ={},
        overrides={"database": {"url": f"sqlite:///{db_path}"}, "app": {"secret_key": "x" * 40}},
    )
    database = Database(settings.database)

    def bastion_read(i: int) -> object:
        with database.read_transaction() as session:
            return session.get(Product, i)

    cases.append(
        (
            "bastion: read_transaction + session.get",
            "read engine (query_only), BEGIN ... COMMIT per call",
            _each(bastion_read),
        )
    )

    spec = app.spec("get_product")
    assert spec.output is not None
    output = spec.output

    def bastion_validated(i: int) -> object:
        with database.read_transaction() as session:
            product = session.get(Product, i)
            return output.dump_json(output.validate_python(product, from_attributes=True))

    cases.append(
        (
            "bastion: read_transaction + get + validate + dump_json",
            "Invoker._run_query's work plus the body, no thread hop",
            _each(bastion_validated),
        )
    )

    runtime = app.runtime(settings)
    loop = _event_loop()

    async def calls(batch: list[int]) -> None:
        for product_id in batch:
            await runtime.call("get_product", product_id=product_id)

    cases.append(
        (
            "bastion: runtime.call (invoker, thread hop)",
            "authorize, Context, to_thread, transaction, validation",
            lambda batch: loop.run_until_complete(calls(batch)),
        )
    )

    results = []
    for name, note, run_batch in cases:
        wall, cpu = _time_per_op(run_batch, ids, seconds)
        results.append(
            {"case": name, "note": note, "wall_us": round(wall, 1), "cpu_us": round(cpu, 1)}
        )
    loop.close()
    runtime.database.dispose()
    database.dispose()
    engine.dispose()
    raw.close()
    return results


def measure_pieces(*, seconds: float, scratch: str) -> list[dict[str, Any]]:
    """Per-request costs outside the query: logging, the thread hop, ids, ETags."""
    import logging
    import uuid

    import anyio.to_thread
    import structlog

    from bastion.http.responses import etag_for
    from bastion.observability import configure_logging, get_logger
    from benchmarks.peers.fastapi_plugins import access_log_processors

    configure_logging(
        level="INFO", fmt="json", env="production", file=str(Path(scratch) / "pieces-bastion.log")
    )
    bastion_log = get_logger("bastion.access")
    with (Path(scratch) / "pieces-peer.log").open("a", encoding="utf-8") as peer_file:
        peer_log = structlog.wrap_logger(
            structlog.WriteLogger(peer_file),
            processors=access_log_processors(),
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        )

        def log_line(log: Any) -> Batch:
            # The fields both access logs write, with a request id bound as the
            # request-id middleware does.
            def run(batch: list[int]) -> None:
                for product_id in batch:
                    with structlog.contextvars.bound_contextvars(request_id=uuid.uuid4().hex):
                        log.info(
                            "request",
                            method="GET",
                            path=f"/api/v1/products/{product_id}",
                            route="/api/v1/products/{product_id}",
                            status=200,
                            duration_ms=1.23,
                            client="127.0.0.1",
                        )

            return run

        loop = _event_loop()

        async def hops(batch: list[int]) -> None:
            for _ in batch:
                await anyio.to_thread.run_sync(int)

        body = (
            ProductOut.model_validate(
                Product(
                    id=1,
                    name="n" * 25,
                    description="d" * 200,
                    price_cents=1,
                    stock=1,
                    weight_grams=1,
                    category_id=1,
                    is_active=True,
                    popularity_score=1.5,
                    created_at=datetime(2024, 1, 1, 8, 0, 0, 1),
                )
            )
            .model_dump_json()
            .encode()
        )
        cases: list[tuple[str, str, Batch]] = [
            (
                "access-log line, bastion",
                "configure_logging(json, file): structlog -> stdlib "
                "logging -> ProcessorFormatter, with the secret scrubber",
                log_line(bastion_log),
            ),
            (
                "access-log line, peer (b)",
                "structlog's native JSON logger to a file, no scrubber",
                log_line(peer_log),
            ),
            (
                "anyio.to_thread.run_sync round trip",
                "one hop to the thread pool and back (no-op); "
                "bastion makes 1 per request, FastAPI's sync route + yield dependency 4",
                lambda batch: loop.run_until_complete(hops(batch)),
            ),
            ("uuid4().hex", "a request id", _each(lambda _i: uuid.uuid4().hex)),
            ("etag_for(body)", "blake2b of the ~450-byte body", _each(lambda _i: etag_for(body))),
        ]
        ids = list(range(1, 20_001))
        results = []
        for name, note, run_batch in cases:
            wall, cpu = _time_per_op(run_batch, ids, seconds)
            results.append(
                {"case": name, "note": note, "wall_us": round(wall, 1), "cpu_us": round(cpu, 1)}
            )
        loop.close()
    return results


# --- ASGI direct -----------------------------------------------------------------------


def _scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def _call(
    app: Callable[..., Awaitable[None]], path: str, headers: list[tuple[bytes, bytes]]
) -> int:
    status = 0
    sent_body = False

    async def receive() -> dict[str, Any]:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": b"", "more_body": False}
        # A connected client never sends more: block as uvicorn does until disconnect.
        await asyncio.Future()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(_scope(path, headers), receive, send)
    return status


async def _measure_asgi(
    app: Any, *, seconds: float, products: int, token: str, concurrency: int
) -> dict[str, Any]:
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"accept", b"application/json"),
        (b"user-agent", b"bench"),
    ]
    if token:  # bastion is measured anonymously: it verifies any bearer token it gets
        headers.append((b"authorization", f"Bearer {token}".encode()))
    rng = random.Random(11)
    non2xx = 0

    async def one() -> None:
        nonlocal non2xx
        status = await _call(app, f"/api/v1/products/{rng.randint(1, products)}", headers)
        if not 200 <= status < 300:
            non2xx += 1

    for _ in range(300):  # warm-up: imports, pools, caches
        await one()
    done = 0
    started, started_cpu = time.perf_counter(), time.process_time()
    deadline = started + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await one()
            done += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - started_cpu
    return {
        "concurrency": concurrency,
        "requests": done,
        "non2xx": non2xx,
        "req_per_s": round(done / elapsed, 1),
        "wall_us": round(elapsed / done * 1e6, 1),
        "cpu_us": round(cpu / done * 1e6, 1),
    }


def measure_asgi(factory: str, *, seconds: float, products: int) -> dict[str, Any]:
    """The target's ASGI app without a server, sequential and 16 in flight."""
    module_name, _, attribute = factory.partition(":")
    app = getattr(importlib.import_module(module_name), attribute)()
    token = os.environ.get("BENCH_TOKEN", "")
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # uvicorn falls back to asyncio too
        runner = asyncio.run
    sequential = runner(
        _measure_asgi(app, seconds=seconds, products=products, token=token, concurrency=1)
    )
    concurrent = runner(
        _measure_asgi(app, seconds=seconds, products=products, token=token, concurrency=16)
    )
    return {"factory": factory, "sequential": sequential, "concurrent": concurrent}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=["rows", "asgi"])
    parser.add_argument(
        "db", nargs="?", help="the seeded SQLite file (made in a temp dir if omitted)"
    )
    parser.add_argument("--factory", help="module:attr of the app factory (asgi mode)")
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--products", type=int, default=PRODUCTS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bastion-bench-") as scratch:
        db = args.db
        if db is None:
            from benchmarks.catalog import seed

            db = str(seed(Path(scratch) / "bench.sqlite3", args.products))
        if args.mode == "rows":
            result: Any = {
                "rows": measure_rows(db, seconds=args.seconds, products=args.products),
                "pieces": measure_pieces(seconds=args.seconds, scratch=scratch),
            }
        else:
            if not args.factory:
                parser.error("asgi mode needs --factory module:attr")
            result = measure_asgi(args.factory, seconds=args.seconds, products=args.products)
    print("BENCH_JSON " + json.dumps(result))


if __name__ == "__main__":
    main()
