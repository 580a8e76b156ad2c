"""A closed-loop HTTP load generator in Python, used only when ``wrk`` is not installed.

``connections`` tasks share one httpx client; each sends a request, waits for the
answer and sends the next, until ``duration`` is up. It prints one JSON line with
the same fields as benchmarks/wrk/products.lua.

httpx spends far more CPU per request than wrk, so on a 2-core machine it can
saturate its own core before the server does: throughput measured with it is a
lower bound and the ratios between targets come out compressed. Results say
which generator produced them.

Run: ``python -m benchmarks.loadgen --url http://127.0.0.1:8000 --duration 10``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time

import httpx


async def run(
    url: str, *, duration: float, connections: int, products: int, token: str, seed: int
) -> dict[str, float]:
    """Load ``url`` for ``duration`` seconds; returns the summary the runner reads."""
    latencies: list[float] = []
    non2xx = 0
    errors = 0
    received = 0
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    started = time.perf_counter()
    deadline = started + duration

    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=5.0
    ) as client:

        async def worker(number: int) -> None:
            nonlocal non2xx, errors, received
            rng = random.Random(seed * 1000 + number)
            while (sent := time.perf_counter()) < deadline:
                try:
                    response = await client.get(f"/api/v1/products/{rng.randint(1, products)}")
                except httpx.HTTPError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - sent)
                received += len(response.content)
                if not 200 <= response.status_code < 300:
                    non2xx += 1

        await asyncio.gather(*(worker(n) for n in range(connections)))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies) or [0.0]

    def percentile(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] * 1e6

    return {
        "requests": len(latencies),
        "duration_us": elapsed * 1e6,
        "bytes": received,
        "p50_us": percentile(50),
        "p90_us": percentile(90),
        "p99_us": percentile(99),
        "max_us": ordered[-1] * 1e6,
        "mean_us": statistics.fmean(ordered) * 1e6,
        "connect_errors": 0,
        "read_errors": errors,
        "write_errors": 0,
        "status_errors": 0,
        "timeouts": 0,
        "non2xx": non2xx,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="base URL, loopback only")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--token", default="")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    host = httpx.URL(args.url).host
    if host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("only loopback addresses may be loaded")
    summary = asyncio.run(
        run(
            args.url,
            duration=args.duration,
            connections=args.connections,
            products=args.products,
            token=args.token,
            seed=args.seed,
        )
    )
    print("BENCH_JSON " + json.dumps(summary))


if __name__ == "__main__":
    main()
