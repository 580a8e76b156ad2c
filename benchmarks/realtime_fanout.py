"""Realtime fan-out benchmark: one change, N WebSocket subscribers, how long until all have it.

Run from the repository root (Redis and PostgreSQL as in the test suite)::

    .venv/bin/python benchmarks/realtime_fanout.py [--rounds 15] [--subscribers 100,1000]

Real ``python -m bastion.cli run`` server processes serve ``benchmarks/apps/realtime_app.py``
(a public channel ``news`` and a live query ``counter`` over a ten-row table); one asyncio
client process holds every WebSocket (the ``websockets`` library, anonymous, as a browser
on a public page) and makes the changes over HTTP. Setups, in one run:

- ``one``: one server, memory bus, SQLite: (a) channel event, (b) live-query result;
- ``redis``: two servers (half the subscribers each) on one SQLite file, Redis pub/sub;
- ``postgres``: two servers on a fresh PostgreSQL database, LISTEN/NOTIFY.

Latency of one delivery: from just before the HTTP request that makes the change to the
moment the client has read that subscriber's message; p50 / p99 / max over every
subscriber of every round. Results go to benchmarks/results/realtime_fanout.md and .json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy import make_url
from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bastion.settings import load_settings  # noqa: E402 (the path above makes `benchmarks` importable)
from bastion.testing import free_port  # noqa: E402
from benchmarks.apps.realtime_app import ROWS, WATCHED_ID, Base, Counter, app  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SETUPS = ("one", "redis", "postgres")
TARGET_MS = 200.0
"""Two-process delivery target of #5 (tests/examples/shop/test_realtime_cart.py)."""
DELIVERY_TIMEOUT_S = 15.0
STARTUP_TIMEOUT_S = 30.0


# -- servers ---------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    pid: int
    log: Path


def _server_env(setup: str, database_url: str, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BASTION_", "PYTEST_"))}
    env.update(
        BASTION_APP="benchmarks.apps.realtime_app:app",
        BASTION_ENV="development",
        BASTION_DATABASE_URL=database_url,
        BASTION_DATABASE_AUTO_MIGRATE="false",
        BASTION_JOBS_EMBEDDED_WORKER="false",
        BASTION_RATELIMIT_ENABLED="false",
        BASTION_LOG_LEVEL="WARNING",
        BASTION_PUBSUB_CHANNEL=f"bench_rt_{secrets.token_hex(4)}",
    )
    if setup == "redis":
        env.update(BASTION_PUBSUB_BACKEND="redis", BASTION_REDIS_URL=redis_url)
    elif setup == "postgres":
        env["BASTION_PUBSUB_BACKEND"] = "postgres"
    else:
        env["BASTION_PUBSUB_BACKEND"] = "memory"
    return env


@contextmanager
def _server(env: dict[str, str], log: Path) -> Iterator[Server]:
    port = free_port()
    command = [sys.executable, "-m", "bastion.cli", "run", "--host", "127.0.0.1"]
    with log.open("w") as output:
        process = subprocess.Popen(
            [*command, "--port", str(port), "--workers", "1"],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: killed as a whole on the way out
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        with httpx.Client(timeout=2.0) as client:
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"server did not start:\n{log.read_text()[-3000:]}")
                try:
                    if client.get(f"{url}/health/live").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.05)
        yield Server(url, process.pid, log)
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _prepare_database(url: str) -> None:
    """Platform tables (migrations), the counters table and its rows."""
    settings = load_settings(None, environ={}, overrides={"database": {"url": url}})
    runtime = app.runtime(settings)
    try:
        runtime.migrator().upgrade()
        Base.metadata.create_all(runtime.database.write_engine)
        with runtime.database.transaction() as session:
            session.add_all(Counter(id=i, value=0) for i in range(1, ROWS + 1))
    finally:
        runtime.database.dispose()


@contextmanager
def _postgres_database(admin_url: str) -> Iterator[str]:
    name = f"bench_rt_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def _client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- clients ---------------------------------------------------------------------------


@dataclass
class Waiter:
    remaining: int
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Subscriber:
    socket: ClientConnection
    received: dict[tuple[str, int], float] = field(default_factory=dict)


class Fleet:
    """Every subscriber's socket, read by one task each; arrivals are stamped on read."""

    def __init__(self) -> None:
        self.subscribers: list[Subscriber] = []
        self.waiters: dict[tuple[str, int], Waiter] = {}
        self.unexpected: list[str] = []
        self._readers: list[asyncio.Task[None]] = []

    async def add(self, urls: list[str], count: int, *, compression: bool) -> None:
        """Connect and subscribe ``count`` more clients, spread over ``urls`` in turn."""
        gate = asyncio.Semaphore(64)
        first = len(self.subscribers)

        async def one(index: int) -> Subscriber:
            base = urls[index % len(urls)].replace("http://", "ws://")
            async with gate:
                socket = await connect(
                    f"{base}/api/v1/realtime",
                    open_timeout=30,
                    ping_interval=None,  # the server's heartbeat is enough; no extra traffic
                    compression="deflate" if compression else None,
                    max_queue=None,
                )
                await socket.send(json.dumps({"type": "subscribe", "channel": "news"}))
                args = {"counter_id": WATCHED_ID}
                await socket.send(
                    json.dumps({"type": "subscribe", "query": "counter", "args": args})
                )
                answers = {json.loads(await socket.recv())["type"] for _ in range(2)}
                if answers != {"subscribed", "result"}:
                    raise SystemExit(f"subscription refused: {answers}")
            return Subscriber(socket)

        added = await asyncio.gather(*(one(first + i) for i in range(count)))
        for subscriber in added:
            self.subscribers.append(subscriber)
            self._readers.append(asyncio.create_task(self._read(subscriber)))

    async def _read(self, subscriber: Subscriber) -> None:
        async for text in subscriber.socket:
            now = time.perf_counter()
            message = json.loads(text)
            kind = message.get("type")
            if kind == "event":
                key = ("event", int(message["data"]["seq"]))
            elif kind == "result":
                key = ("result", int(message["data"]["value"]))
            else:
                if kind != "ping":
                    self.unexpected.append(str(text)[:200])
                continue
            subscriber.received[key] = now
            waiter = self.waiters.get(key)
            if waiter is not None:
                waiter.remaining -= 1
                if waiter.remaining == 0:
                    waiter.done.set()

    @property
    def compression(self) -> str:
        extensions = self.subscribers[0].socket.protocol.extensions if self.subscribers else []
        return ", ".join(extension.name for extension in extensions) or "none"

    async def close(self) -> None:
        for task in self._readers:
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        await asyncio.gather(*(s.socket.close() for s in self.subscribers), return_exceptions=True)


async def _round(
    fleet: Fleet,
    http: httpx.AsyncClient,
    url: str,
    kind: str,
    number: int,
    servers: list[Server],
) -> dict[str, Any]:
    """Make one change and wait until every subscriber has it."""
    key = ("event" if kind == "event" else "result", number)
    waiter = Waiter(len(fleet.subscribers))
    fleet.waiters[key] = waiter
    cpu_client, cpu_servers = _client_cpu(), [_cpu_seconds(s.pid) for s in servers]
    started = time.perf_counter()
    if kind == "event":
        response = await http.post(f"{url}/api/v1/news", params={"seq": number})
    else:
        response = await http.post(f"{url}/api/v1/counters/{WATCHED_ID}", params={"value": number})
    answered = time.perf_counter()
    if response.status_code >= 300:
        raise SystemExit(f"the change failed: {response.status_code} {response.text}")
    with suppress(TimeoutError):  # what did not arrive is counted as missing
        await asyncio.wait_for(waiter.done.wait(), DELIVERY_TIMEOUT_S)
    finished = time.perf_counter()
    del fleet.waiters[key]
    latencies = [s.received.pop(key) - started for s in fleet.subscribers if key in s.received]
    wall = finished - started
    return {
        "latencies": latencies,
        "missing": len(fleet.subscribers) - len(latencies),
        "request_ms": (answered - started) * 1000,
        "wall_s": wall,
        "client_cpu_share": (_client_cpu() - cpu_client) / wall,
        "server_cpu_s": sum(_cpu_seconds(s.pid) for s in servers) - sum(cpu_servers),
    }


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _summary(rounds: list[dict[str, Any]], subscribers: int) -> dict[str, Any]:
    latencies = sorted(t for r in rounds for t in r["latencies"])
    if not latencies:
        raise SystemExit("nothing was delivered: the numbers would mean nothing")
    shares = sorted(r["client_cpu_share"] for r in rounds)
    return {
        "subscribers": subscribers,
        "rounds": len(rounds),
        "deliveries": len(latencies),
        "missing": sum(r["missing"] for r in rounds),
        "p50_ms": round(_percentile(latencies, 0.50) * 1000, 1),
        "p99_ms": round(_percentile(latencies, 0.99) * 1000, 1),
        "max_ms": round(latencies[-1] * 1000, 1),
        "first_p50_ms": round(
            sorted(min(r["latencies"]) for r in rounds if r["latencies"])[len(rounds) // 2] * 1000,
            1,
        ),
        "request_p50_ms": round(sorted(r["request_ms"] for r in rounds)[len(rounds) // 2], 1),
        # A mean: /proc counts whole clock ticks (10 ms), too coarse for one round.
        "server_cpu_ms_per_round": round(
            sum(r["server_cpu_s"] for r in rounds) / len(rounds) * 1000, 1
        ),
        "client_cpu_share_p50": round(shares[len(shares) // 2], 2),
        "client_cpu_share_max": round(shares[-1], 2),
    }


async def _measure(
    setup: str, servers: list[Server], counts: list[int], options: argparse.Namespace
) -> dict[str, Any]:
    urls = [s.url for s in servers]
    fleet = Fleet()
    number = 0
    result: dict[str, Any] = {"setup": setup, "servers": len(servers), "runs": []}
    memory: list[dict[str, Any]] = [
        {"connections": 0, "rss_kib": [_rss_kib(s.pid) for s in servers]}
    ]
    async with httpx.AsyncClient(timeout=30) as http:
        for _ in range(3):  # warm the change path before any socket connects
            await http.post(f"{urls[0]}/api/v1/news", params={"seq": 0})
        memory[0]["rss_kib"] = [_rss_kib(s.pid) for s in servers]
        try:
            for count in counts:
                started = time.perf_counter()
                await fleet.add(
                    urls, count - len(fleet.subscribers), compression=options.compression
                )
                connect_s = time.perf_counter() - started
                await asyncio.sleep(0.5)
                memory.append({"connections": count, "rss_kib": [_rss_kib(s.pid) for s in servers]})
                for kind in ("event", "query"):
                    rounds = []
                    for index in range(options.warmup + options.rounds):
                        number += 1
                        # Alternate the server the change is made on: with two, half the
                        # deliveries cross the bus from the other process.
                        made_on = urls[index % len(urls)]
                        outcome = await _round(fleet, http, made_on, kind, number, servers)
                        if index >= options.warmup:
                            rounds.append(outcome)
                        await asyncio.sleep(options.pause)
                    summary = {"kind": kind, "connect_s": round(connect_s, 1)}
                    summary.update(_summary(rounds, count))
                    print(json.dumps({"setup": setup, **summary}), flush=True)
                    result["runs"].append(summary)
        finally:
            result["compression"] = fleet.compression
            await fleet.close()
    result["memory"] = memory
    result["unexpected_messages"] = fleet.unexpected[:5]
    return result


def _run_setup(
    setup: str, counts: list[int], options: argparse.Namespace, scratch: Path
) -> dict[str, Any]:
    with ExitStack() as stack:
        if setup == "postgres":
            database_url = stack.enter_context(_postgres_database(options.postgres_url))
        else:
            database_url = f"sqlite:///{scratch / f'{setup}.sqlite3'}"
        _prepare_database(database_url)
        env = _server_env(setup, database_url, options.redis_url)
        processes = 1 if setup == "one" else 2
        servers = [
            stack.enter_context(_server(env, scratch / f"{setup}-{i}.log"))
            for i in range(processes)
        ]
        started = time.perf_counter()
        result = asyncio.run(_measure(setup, servers, counts, options))
        result["seconds"] = round(time.perf_counter() - started, 1)
        return result


# -- report ----------------------------------------------------------------------------

LABELS = {
    ("one", "event"): "(a) channel event, 1 process, memory bus, SQLite",
    ("one", "query"): "(b) live-query result after a commit, 1 process, SQLite",
    ("redis", "event"): "(c) channel event, 2 processes, Redis pub/sub",
    ("redis", "query"): "(c') live-query result, 2 processes, Redis pub/sub, SQLite",
    ("postgres", "event"): "(d) channel event, 2 processes, PostgreSQL LISTEN/NOTIFY",
    ("postgres", "query"): "(d') live-query result, 2 processes, PostgreSQL LISTEN/NOTIFY",
}


def _report(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# Realtime fan-out: one change, N WebSocket subscribers",
        "",
        f"Measured {meta['when']} by `benchmarks/realtime_fanout.py` (generated file: rerun the "
        "script rather than editing it).",
        "",
        f"Machine: {meta['cpus']} CPUs ({meta['cpu_model']}), {meta['platform']}, Python "
        f"{meta['python']}, websockets {meta['websockets']}, uvicorn {meta['uvicorn']}; shared "
        f"with other work: load average {meta['load_before']} at start, {meta['load_after']} "
        f"at end. Whole run: {meta['seconds']} s.",
        "",
        "## Method",
        "",
        "- Servers: `python -m bastion.cli run --workers 1` serving "
        "`benchmarks/apps/realtime_app.py`, env `development`, rate limiting off, log level "
        "WARNING, not pinned to a core. Two-process setups put half the subscribers on each "
        "server and make the change on each server in turn.",
        f"- Clients: one asyncio process, `websockets` connections, anonymous, each subscribed "
        f"to channel `news` and live query `counter` (one row of a {ROWS}-row table); "
        f"compression negotiated: {meta['compression']}. Every socket has its own reader task, "
        "which stamps `time.perf_counter()` when a message has been read.",
        "- A round: stamp, then `POST /api/v1/news?seq=K` (an action that sends an event) or "
        "`POST /api/v1/counters/1?value=K` (a mutation that commits a new value: the live "
        "query re-runs once per process for all its subscribers), then wait until every "
        f"subscriber has message K. Latency of a delivery = its arrival - the stamp. "
        f"{meta['warmup']} unmeasured rounds, then {meta['rounds']} measured ones per row, "
        f"{meta['pause']} s apart.",
        "- p50 / p99 / max over subscribers x rounds. `first` is the median over rounds of the "
        "earliest delivery (the fixed cost: request, commit, bus); p99 - first is the fan-out. "
        "`server CPU` is the servers' utime+stime per round (from /proc), mean; `client CPU` "
        "the client process's CPU seconds per wall second of the round (median / max): "
        "below 1.0 the client was not saturated.",
        "",
        "## Delivery latency",
        "",
        "| setup | N | p50 ms | p99 ms | max ms | first ms | request ms | server CPU ms/round "
        "| client CPU (p50 / max) | missing |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for result in results:
        for run in result["runs"]:
            label = LABELS[(result["setup"], run["kind"])]
            lines.append(
                f"| {label} | {run['subscribers']} | {run['p50_ms']} | {run['p99_ms']} "
                f"| {run['max_ms']} | {run['first_p50_ms']} | {run['request_p50_ms']} "
                f"| {run['server_cpu_ms_per_round']} | {run['client_cpu_share_p50']} / "
                f"{run['client_cpu_share_max']} | {run['missing']} |"
            )
    lines += ["", "## Ratios", ""]
    by_key = {
        (r["setup"], run["kind"], run["subscribers"]): run for r in results for run in r["runs"]
    }
    for (setup, kind, count), run in sorted(by_key.items()):
        if count == 1000 and (setup, kind, 100) in by_key:
            small = by_key[(setup, kind, 100)]
            lines.append(
                f"- {LABELS[(setup, kind)]}: p99 at N=1000 / N=100 = "
                f"{run['p99_ms'] / small['p99_ms']:.1f}x"
            )
    for setup in ("redis", "postgres"):
        for count in (1000, 100):
            run = by_key.get((setup, "event", count))
            if run is not None:
                lines.append(
                    f"- **{LABELS[(setup, 'event')]}, N={count}: p99 / {TARGET_MS:.0f} ms target "
                    f"= {run['p99_ms'] / TARGET_MS:.2f}** (below 1 meets it)"
                )
        one = by_key.get(("one", "event", 1000))
        two = by_key.get((setup, "event", 1000))
        if one is not None and two is not None:
            lines.append(
                f"- {setup} two processes / one process (channel event, N=1000, p99) = "
                f"{two['p99_ms'] / one['p99_ms']:.2f}x"
            )
    lines += [
        "",
        "## Memory (RSS of each server process)",
        "",
        "| setup | before connecting KiB | with 100 KiB | with 1000 KiB | per connection KiB |",
        "| --- | --- | --- | --- | ---: |",
    ]
    for result in results:
        rss = {m["connections"]: m["rss_kib"] for m in result["memory"]}
        if 0 in rss and 1000 in rss:
            per = (sum(rss[1000]) - sum(rss[0])) / 1000
            cells = [" + ".join(str(kib) for kib in rss.get(n, [])) or "-" for n in (0, 100, 1000)]
            lines.append(
                f"| {result['setup']} ({result['servers']} process"
                f"{'es' if result['servers'] > 1 else ''}) | {' | '.join(cells)} | {per:.1f} |"
            )
    lines += [
        "",
        "RSS is read from /proc after the change path has been warmed up (0), then after "
        "connecting and subscribing each N, before that N's rounds; per connection = the sum "
        "over processes of (N=1000 - 0) / 1000. Each connection holds two subscriptions (the "
        "channel and the live query). Numbers from a shared 2-core machine: compare rows "
        "within one run, not with other runs.",
        "",
    ]
    return "\n".join(lines)


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", default="100,1000", help="counts, ascending")
    parser.add_argument("--rounds", type=int, default=15, help="measured rounds per row")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured rounds per row")
    parser.add_argument("--pause", type=float, default=0.1, help="seconds between rounds")
    parser.add_argument("--setups", default=",".join(SETUPS))
    parser.add_argument(
        "--no-compression",
        dest="compression",
        action="store_false",
        help="do not offer permessage-deflate (browsers do offer it)",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--output", type=Path, default=RESULTS)
    options = parser.parse_args()
    for noisy in ("httpx", "alembic"):  # a line per change, per migration otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    counts = sorted(int(c) for c in options.subscribers.split(","))
    # Each socket is a descriptor on both sides; the servers inherit the limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max(counts) * 2 + 512
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for setup in options.setups.split(","):
            results.append(_run_setup(setup, counts, options, Path(scratch)))
    meta = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "websockets": version("websockets"),
        "uvicorn": version("uvicorn"),
        "load_before": f"{load_before:.2f}",
        "load_after": f"{os.getloadavg()[0]:.2f}",
        "seconds": round(time.perf_counter() - started),
        "rounds": options.rounds,
        "warmup": options.warmup,
        "pause": options.pause,
        "compression": results[0]["compression"] if results else "none",
        "client_processes": 1,
    }
    options.output.mkdir(parents=True, exist_ok=True)
    (options.output / "realtime_fanout.json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=2) + "\n"
    )
    (options.output / "realtime_fanout.md").write_text(_report(results, meta))


if __name__ == "__main__":
    main()
