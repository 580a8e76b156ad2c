"""Observability overhead: the request path with metrics, traces and logs on, against all off.

Run from the repository root::

    .venv/bin/python benchmarks/observability_overhead.py [--seconds 6] [--reps 3]

One SQLite file seeded with the catalogue every benchmark uses (10,000 products), and
the request-path benchmark's query, ``GET /api/v1/products/{id}`` (one row by primary
key, ten fields as JSON), served by one runtime per mode on that file:

- ``off``: ``[metrics] enabled = false``, ``[tracing] enabled = false``, access log off;
- ``logs``: only the access log on (JSON lines to a file, as in production);
- ``metrics``: only Prometheus metrics on;
- ``traces``: only traces on: a request span, a function span and a SQL span per
  request, through a real ``BatchSpanProcessor`` to an exporter that drops them in
  process (what a collector does with them is not the request path's cost);
- ``full``: all three, which is bastion's default with a trace exporter configured.

Production settings otherwise (env ``production``, rate limiting on at a rate the load
never reaches, as request_path.py). Each mode is called through its ASGI app in process
(no server, no sockets: what a server adds is the same for every mode and is measured by
request_path.py), one request at a time for latency, then 16 in flight for throughput.
The CPU column is the process's CPU time (every thread: the span processor's export
thread included) per request. Modes run in a new order every repetition; the medians
over repetitions are reported, as ratios to ``off``. Results go to
benchmarks/results/observability_overhead.md and .json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bastion.observability import configure_logging  # noqa: E402 (the path above)
from bastion.settings import load_settings  # noqa: E402
from benchmarks.apps.bastion_app import app  # noqa: E402
from benchmarks.catalog import PRODUCTS, seed  # noqa: E402
from benchmarks.in_process import _call  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
MODES = ("off", "logs", "metrics", "traces", "full")
SECRET = "observability-benchmark-secret-0123456789abcdef"


class DroppingExporter(SpanExporter):
    """Counts the spans it is handed and keeps none."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def _overrides(mode: str, database: Path) -> dict[str, Any]:
    metrics = mode in ("metrics", "full")
    traces = mode in ("traces", "full")
    logs = mode in ("logs", "full")
    return {
        "app": {"secret_key": SECRET},
        "database": {"url": f"sqlite:///{database}", "auto_migrate": False},
        "metrics": {"enabled": metrics, "allow_ips": ["127.0.0.1"]},
        # "none": spans are made and sampled; the benchmark adds the batch processor.
        "tracing": {"enabled": traces, "exporter": "none"},
        "log": {"access_log": logs, "format": "json"},
        "ratelimit": {"default_limits": ["100000000/minute"]},
    }


async def _measure(asgi: Any, *, seconds: float, concurrency: int) -> dict[str, Any]:
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"accept", b"application/json"),
        (b"user-agent", b"bench"),
    ]
    chooser = random.Random(7)
    failed = 0

    async def one() -> float:
        nonlocal failed
        path = f"/api/v1/products/{chooser.randint(1, PRODUCTS)}"
        started = time.perf_counter()
        if await _call(asgi, path, headers) != 200:
            failed += 1
        return time.perf_counter() - started

    for _ in range(200):  # warm-up: imports, pools, caches of compiled statements
        await one()
    latencies: list[float] = []
    cpu_started = time.process_time()
    started = time.perf_counter()
    deadline = started + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            latencies.append(await one())

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    if failed:
        raise SystemExit(f"{failed} requests failed: the numbers would mean nothing")
    ordered = sorted(latencies)
    return {
        "requests": len(latencies),
        "req_per_s": len(latencies) / elapsed,
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[int(len(ordered) * 0.99) - 1] * 1000,
        "cpu_us_per_req": cpu / len(latencies) * 1e6,
    }


async def _run_mode(mode: str, database: Path, seconds: float) -> dict[str, Any]:
    settings = load_settings(
        None, env="production", environ={}, overrides=_overrides(mode, database)
    )
    runtime = app.runtime(settings)
    exporter = DroppingExporter()
    if runtime.tracing.provider is not None:
        runtime.tracing.provider.add_span_processor(BatchSpanProcessor(exporter))
    await runtime.startup()
    try:
        asgi = runtime.asgi()
        sequential = await _measure(asgi, seconds=seconds, concurrency=1)
        concurrent = await _measure(asgi, seconds=seconds, concurrency=16)
    finally:
        await runtime.shutdown()  # flushes the batch processor: every span is counted
    served = sequential["requests"] + concurrent["requests"] + 400
    return {
        "mode": mode,
        "sequential": sequential,
        "concurrent": concurrent,
        "spans_per_request": round(exporter.spans / served, 2),
    }


async def _migrate(database: Path) -> None:
    """The platform tables, once: the per-minute request statistics are written in every mode
    (they feed the console and alerts whatever ``[metrics] enabled`` says)."""
    overrides = _overrides("off", database)
    overrides["database"]["auto_migrate"] = True
    runtime = app.runtime(load_settings(None, env="production", environ={}, overrides=overrides))
    await runtime.startup()
    await runtime.shutdown()


def _median(runs: list[dict[str, Any]], part: str, key: str) -> float:
    return statistics.median(run[part][key] for run in runs)


def _summary(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    summary = {}
    for mode in MODES:
        runs = [r for r in results if r["mode"] == mode]
        if not runs:
            continue
        summary[mode] = {
            "p50_ms": _median(runs, "sequential", "p50_ms"),
            "p99_ms": _median(runs, "sequential", "p99_ms"),
            "cpu_us_per_req": _median(runs, "sequential", "cpu_us_per_req"),
            "req_per_s_16": _median(runs, "concurrent", "req_per_s"),
            "spans_per_request": statistics.median(r["spans_per_request"] for r in runs),
        }
    return summary


def _report(summary: dict[str, dict[str, float]], meta: dict[str, Any]) -> str:
    base = summary["off"]
    lines = [
        "# Observability overhead: `GET /api/v1/products/{id}`, everything on vs everything off",
        "",
        f"Measured {meta['when']} by `benchmarks/observability_overhead.py` (generated file: "
        "rerun the script rather than editing it).",
        "",
        f"Machine: {meta['cpus']} CPUs, {meta['platform']}, Python {meta['python']}; "
        f"load average {meta['load_before']} at start, {meta['load_after']} at end.",
        "",
        "## Method",
        "",
        "- Data: the benchmark catalogue (10,000 products) in one SQLite file (WAL); one "
        "product by primary key per request, a random id each time.",
        "- One runtime per mode on that file, production settings (rate limiting on at a rate "
        "never reached), called through its ASGI app in process (no server, no sockets).",
        "- `off`: `[metrics] enabled = false`, `[tracing] enabled = false`, access log off. "
        "`logs`: access log only (JSON to a file). `metrics`: Prometheus metrics only. "
        "`traces`: traces only, through a real `BatchSpanProcessor` to an exporter that drops "
        "the spans in process. `full`: all three.",
        f"- Latency and CPU: one request at a time for {meta['seconds']} s; throughput: 16 in "
        f"flight for {meta['seconds']} s. {meta['reps']} repetitions, modes in a new order each "
        "time; medians over repetitions.",
        "- CPU µs/req: the process's CPU time (every thread, the span export thread included) "
        "over the 1-at-a-time window, divided by the requests served.",
        "",
        "## Results",
        "",
        "| mode | p50 ms | p99 ms | CPU µs/req | req/s (16 in flight) | spans/req "
        "| p50 vs off | CPU vs off | req/s vs off |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for mode, row in summary.items():
        lines.append(
            f"| {mode} | {row['p50_ms']:.3f} | {row['p99_ms']:.3f} | {row['cpu_us_per_req']:.0f} "
            f"| {row['req_per_s_16']:.0f} | {row['spans_per_request']:.1f} "
            f"| {row['p50_ms'] / base['p50_ms']:.2f}x "
            f"| {row['cpu_us_per_req'] / base['cpu_us_per_req']:.2f}x "
            f"| {row['req_per_s_16'] / base['req_per_s_16']:.2f}x |"
        )
    if "full" in summary:
        full = summary["full"]
        lines += [
            "",
            f"**Full observability costs {full['cpu_us_per_req'] / base['cpu_us_per_req']:.2f}x "
            f"the CPU per request of everything off "
            f"({full['cpu_us_per_req'] - base['cpu_us_per_req']:+.0f} µs), "
            f"{full['p50_ms'] / base['p50_ms']:.2f}x the median latency, and serves "
            f"{full['req_per_s_16'] / base['req_per_s_16']:.2f}x the requests per second.**",
        ]
    lines += [
        "",
        "A request served in process has no HTTP parsing or socket work, so these ratios are "
        "an upper bound: behind a real server the same absolute cost is a smaller share "
        "(see request_path.md for the server's own cost). Numbers from a shared 2-core "
        "machine: compare ratios, not absolute values.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="per measurement")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES), help="off is always measured")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    modes = ["off", *(m for m in args.modes.split(",") if m != "off")]
    load_before = os.getloadavg()[0]
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        database = seed(Path(scratch) / "bench.sqlite3")
        # Process-wide, as `bastion run` does it: JSON lines to a file.
        configure_logging(level="INFO", fmt="json", env="production", file=f"{scratch}/bastion.log")
        asyncio.run(_migrate(database))
        for rep in range(args.reps):
            order = modes[rep % len(modes) :] + modes[: rep % len(modes)]
            for mode in order:
                result = asyncio.run(_run_mode(mode, database, args.seconds))
                print(json.dumps(result), flush=True)
                results.append(result)
    meta = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_before": f"{load_before:.2f}",
        "load_after": f"{os.getloadavg()[0]:.2f}",
        "seconds": args.seconds,
        "reps": args.reps,
    }
    summary = _summary(results)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "observability_overhead.json").write_text(
        json.dumps({"meta": meta, "summary": summary, "results": results}, indent=2) + "\n"
    )
    (args.output / "observability_overhead.md").write_text(_report(summary, meta))


if __name__ == "__main__":
    main()
