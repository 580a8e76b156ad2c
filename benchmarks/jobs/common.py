"""What every system's jobs share: where a latency job writes the time it started.

Every ``stamp`` job, whatever runs it, calls :func:`record_start` as its first
statement: one ``RPUSH`` of ``"<i> <time.time()>"`` to a Redis list that the runner
waits on with ``BLPOP``. The clock is read before the Redis call, so the call's own
cost is not part of the latency.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import redis

#: The benchmark's own Redis database; the runner flushes this one only.
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/5")
STARTS_KEY = "bench:jobs:starts"

_client: redis.Redis | None = None


def client() -> redis.Redis:
    """One client per process (redis-py's pool is thread-safe)."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(REDIS_URL)
    return _client


def record_start(i: int) -> None:
    """Record that job ``i`` started now (wall clock, shared by every process)."""
    started = time.time()
    client().rpush(STARTS_KEY, f"{i} {started!r}")


def wait_start(i: int, timeout_s: float) -> float:
    """Block until job ``i`` has recorded its start; returns that start time."""
    popped = client().blpop([STARTS_KEY], timeout=timeout_s)
    if popped is None:
        raise RuntimeError(f"job {i} did not start within {timeout_s} s")
    value = popped[1]
    index, started = (value.decode() if isinstance(value, bytes) else value).split()
    if int(index) != i:
        raise RuntimeError(f"expected the start of job {i}, got job {index}")
    return float(started)


def server_cpu_seconds(comm: str) -> float:
    """CPU seconds (user + system, reaped children included) of every process named
    ``comm`` (``postgres``, ``redis-server``): a database server's whole CPU use, its
    exited backends included. Other users of the same server count too."""
    ticks = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() != comm:
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += sum(int(value) for value in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")
