"""Query-cache benchmark: a cached aggregate served uncached, from memory and from Redis.

Run from the repository root (Redis at ``BENCH_REDIS_URL``, default 127.0.0.1:6379/0)::

    .venv/bin/python benchmarks/cache_hit.py [--seconds 8] [--keys 10]

One SQLite file seeded with the catalogue every benchmark uses (10,000 products), and
one bastion query, ``GET /api/v1/categories/stats?min_stock=N``: per category, the
product count, average price, total stock and best popularity, a ``GROUP BY`` over the
whole table returned as 40 Pydantic rows. ``N`` cycles through ``--keys`` values, so
the cached modes hit ``--keys`` entries. Modes, one runtime each on the same file:

- ``uncached``: ``[cache] enabled = false``, the query runs every time;
- ``memory``: the in-process cache, every measured request a hit;
- ``redis``: the Redis cache, every measured request a hit (one Lua script round trip,
  then validation of the JSON as the response type).

Each mode is called through its ASGI app in process (no sockets, no HTTP parsing:
what a server adds is the same for every mode and is measured by request_path.py),
one request at a time for the latency percentiles, then 16 in flight for
throughput. Results go to benchmarks/results/cache_hit.md and cache_hit.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bastion import App, Context  # noqa: E402 (the path above makes `benchmarks` importable)
from bastion.settings import load_settings  # noqa: E402
from benchmarks.catalog import Base, Product, seed  # noqa: E402
from benchmarks.in_process import _call  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
MODES = ("uncached", "memory", "redis")

app = App("cachebench", metadata=Base.metadata)


class CategoryStats(BaseModel):
    category_id: int
    products: int
    average_price_cents: float
    total_stock: int
    best_popularity: float


@app.query("/categories/stats", cache="10m")
def category_stats(ctx: Context, min_stock: int = 0) -> list[CategoryStats]:
    """Per-category figures over every product with at least ``min_stock`` in stock."""
    rows = ctx.session.execute(
        select(
            Product.category_id,
            func.count(),
            func.avg(Product.price_cents),
            func.sum(Product.stock),
            func.max(Product.popularity_score),
        )
        .where(Product.stock >= min_stock, Product.is_active)
        .group_by(Product.category_id)
        .order_by(Product.category_id)
    )
    return [
        CategoryStats(
            category_id=c, products=n, average_price_cents=p, total_stock=s, best_popularity=b
        )
        for c, n, p, s, b in rows
    ]


async def _measure(asgi: Any, *, seconds: float, keys: int, concurrency: int) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1:8000"), (b"accept", b"application/json")]
    paths = [f"/api/v1/categories/stats?min_stock={k}" for k in range(keys)]
    non2xx = 0

    async def one(n: int) -> float:
        nonlocal non2xx
        path, _, query = paths[n % keys].partition("?")
        started = time.perf_counter()
        status = await _call_query(asgi, path, query, headers)
        if status != 200:
            non2xx += 1
        return time.perf_counter() - started

    for n in range(max(50, keys * 3)):  # warm-up: imports, pools, and every entry stored
        await one(n)
    if non2xx:
        raise SystemExit(f"{non2xx} warm-up requests failed: the numbers would mean nothing")
    latencies: list[float] = []
    started = time.perf_counter()
    deadline = started + seconds

    async def worker(offset: int) -> None:
        n = offset
        while time.perf_counter() < deadline:
            latencies.append(await one(n))
            n += concurrency

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    if non2xx:
        raise SystemExit(f"{non2xx} measured requests failed: the numbers would mean nothing")
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "non2xx": non2xx,
        "req_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 3),
    }


async def _call_query(asgi: Any, path: str, query: str, headers: list[Any]) -> int:
    # benchmarks.in_process._call sends no query string: add it to the scope it builds.
    async def with_query(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asgi({**scope, "query_string": query.encode()}, receive, send)

    return await _call(with_query, path, headers)


async def _run_mode(
    mode: str, database: Path, redis_url: str, prefix: str, seconds: float, keys: int
) -> dict[str, Any]:
    cache: dict[str, Any] = {"enabled": mode != "uncached"}
    database_section = {"url": f"sqlite:///{database}", "auto_migrate": False}
    overrides: dict[str, Any] = {"database": database_section, "cache": cache}
    if mode == "redis":
        cache.update(backend="redis", prefix=prefix)
        overrides["redis"] = {"url": redis_url}
    overrides["log"] = {"access_log": False, "level": "WARNING"}
    # Limited as in production, at a rate the load never reaches (as request_path.py).
    overrides["ratelimit"] = {"default_limits": ["100000000/minute"]}
    runtime = app.runtime(load_settings(None, environ={}, overrides=overrides))
    await runtime.startup()
    try:
        asgi = runtime.asgi()
        sequential = await _measure(asgi, seconds=seconds, keys=keys, concurrency=1)
        concurrent = await _measure(asgi, seconds=seconds, keys=keys, concurrency=16)
        counters = {"hits": runtime.cache.hits, "misses": runtime.cache.misses}
        errors = getattr(runtime.cache, "errors", 0)
    finally:
        await runtime.shutdown()
    return {
        "mode": mode,
        "sequential": sequential,
        "concurrent": concurrent,
        "cache": {**counters, "errors": errors},
    }


def _clean_redis(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        names = list(client.scan_iter(match=f"{prefix}*"))
        if names:
            client.delete(*names)
    finally:
        client.close()


def _report(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    base = {r["mode"]: r for r in results}["uncached"]
    lines = [
        "# Query-cache benchmark: `GET /api/v1/categories/stats?min_stock=N`",
        "",
        f"Measured {meta['when']} by `benchmarks/cache_hit.py` (generated file: rerun the "
        "script rather than editing it).",
        "",
        f"Machine: {meta['cpus']} CPUs, {meta['platform']}, Python {meta['python']}; "
        f"load average {meta['load_before']} at start, {meta['load_after']} at end.",
        "",
        "## Method",
        "",
        f"- Data: the benchmark catalogue (10,000 products) in one SQLite file (WAL); the query "
        f"groups every active product with `stock >= N` by category (40 rows out); N cycles "
        f"through {meta['keys']} values, so the cached modes hold {meta['keys']} entries.",
        "- Each mode has its own runtime on that file, called through its ASGI app in process "
        "(no server, no sockets), access log off; warm-up requests store every entry first.",
        f"- Latency: one request at a time for {meta['seconds']} s; throughput: 16 in flight "
        f"for {meta['seconds']} s. Redis: {meta['redis']} (loopback).",
        "",
        "## Results",
        "",
        "| mode | p50 ms | p99 ms | req/s (1 at a time) | req/s (16 in flight) "
        "| p50 vs uncached | req/s (16) vs uncached | hits / misses / errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        seq, conc, c = r["sequential"], r["concurrent"], r["cache"]
        speed = base["sequential"]["p50_ms"] / seq["p50_ms"]
        through = conc["req_per_s"] / base["concurrent"]["req_per_s"]
        lines.append(
            f"| {r['mode']} | {seq['p50_ms']:.2f} | {seq['p99_ms']:.2f} | {seq['req_per_s']:.0f} "
            f"| {conc['req_per_s']:.0f} | {speed:.1f}x faster | {through:.1f}x "
            f"| {c['hits']} / {c['misses']} / {c['errors']} |"
        )
    lines += [
        "",
        "A hit still pays for the request path (routing, validation of arguments, JSON "
        "rendering of 40 rows); the Redis hit adds a thread hop, one round trip and the "
        "validation of the JSON as `list[CategoryStats]`. Numbers from a shared 2-core "
        "machine: compare ratios, not absolute values.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    parser.add_argument("--keys", type=int, default=10, help="distinct arguments cycled")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"bench:{secrets.token_hex(4)}:"
    load_before = os.getloadavg()[0]
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        database = seed(Path(scratch) / "bench.sqlite3")
        try:
            for mode in args.modes.split(","):
                result = asyncio.run(
                    _run_mode(mode, database, redis_url, prefix, args.seconds, args.keys)
                )
                print(json.dumps(result), flush=True)
                results.append(result)
        finally:
            if "redis" in args.modes:
                _clean_redis(redis_url, prefix)
    meta = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_before": f"{load_before:.2f}",
        "load_after": f"{os.getloadavg()[0]:.2f}",
        "keys": args.keys,
        "seconds": args.seconds,
        "redis": redis_url,
    }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "cache_hit.json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=2) + "\n"
    )
    if {"uncached"} <= {r["mode"] for r in results}:
        (args.output / "cache_hit.md").write_text(_report(results, meta))


if __name__ == "__main__":
    main()
