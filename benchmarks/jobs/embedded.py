"""Enqueue→start latency with the worker inside the enqueuing process (SQLite).

``bastion run --embedded-worker`` is how bastion runs on one machine with SQLite: the
worker shares the process that enqueues, and a commit that enqueued wakes it at once
(an in-process signal), whatever ``[jobs] poll_interval_s`` says. This child does
what the runner does for the other systems, in one process:

    python -m benchmarks.jobs.embedded --url sqlite:////abs/path.sqlite3 --count 200

The database must exist and be migrated. It prints one ``BENCH_JSON {...}`` line
with the latencies in seconds.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from typing import Any

import anyio
import anyio.to_thread

from benchmarks.jobs.bastion_app import app, stamp
from benchmarks.jobs.common import STARTS_KEY, client, wait_start


async def measure(url: str, count: int, gap_s: tuple[float, float]) -> dict[str, Any]:
    settings = app.load_settings(
        environ={}, overrides={"database": {"url": url}, "log": {"level": "WARNING"}}
    )
    runtime = app.runtime(settings)
    client().delete(STARTS_KEY)
    latencies: list[float] = []
    worker = runtime.jobs.worker(concurrency=16)
    async with anyio.create_task_group() as group:
        await group.start(worker.run)
        # Warm-up: the worker's Redis client and every code path are loaded.
        await runtime.jobs.enqueue(stamp, i=-1)
        await anyio.to_thread.run_sync(wait_start, -1, 30.0)
        for i in range(count):
            await anyio.sleep(random.uniform(*gap_s))
            sent = time.time()
            await runtime.jobs.enqueue(stamp, i=i)
            started = await anyio.to_thread.run_sync(wait_start, i, 30.0)
            latencies.append(started - sent)
        worker.stop()
    await anyio.to_thread.run_sync(runtime.database.dispose)
    return {"latencies_s": latencies}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--gap-min", type=float, default=0.05)
    parser.add_argument("--gap-max", type=float, default=0.25)
    args = parser.parse_args()
    result = anyio.run(measure, args.url, args.count, (args.gap_min, args.gap_max))
    print("BENCH_JSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
