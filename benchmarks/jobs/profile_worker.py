"""Where a bastion worker's time goes: one in-process worker run, counted or profiled.

    python -m benchmarks.jobs.profile_worker --url URL --jobs 5000 --flavour async \
        --mode count|yappi|claim [--concurrency 16] [--single M] [--pool-size P]

The database must exist and be migrated (the runner does both). The child enqueues
``--jobs`` no-op jobs in one transaction, then runs ``runtime.jobs.worker()`` in this
process until every job is settled (it watches the worker's own ``settled`` counter,
so the watching sends no SQL), and prints one ``BENCH_JSON {...}`` line.

- ``count``: no profiler. Every SQL statement the write engine sends is counted and
  timed (wall clock, per kind: claim, settle, lease extension, ...), and so are
  commits, the claim and settle batch sizes, and this process's CPU time (all
  threads) and, on PostgreSQL, the server's. These are the costs per job.
- ``--single M`` first enqueues M jobs one per transaction (as a mutation does) and
  counts their statements, commits and pool pings too, then deletes them.
- ``--pool-size``: the same run with another ``[database] pool_size`` (default 5,
  plus ``max_overflow`` 10 connections opened and closed on demand).
- ``claim``: no worker; 30 claims of 16 jobs with ``--jobs`` queued, timed, and the
  claim statement's query plan (PostgreSQL: after ANALYZE): how a claim's cost grows
  with the backlog. Then half the claimed jobs are settled by bastion's
  ``JobStore.settle`` (32 per transaction) and, for comparison only, the other half
  by the same fenced UPDATE sent as one executemany per transaction (not bastion's
  code: what batching the statement would save).
- ``yappi``: the same run under yappi's CPU clock, every thread, C functions included:
  the top functions by self and inclusive time. A deterministic profiler slows code
  that makes many small calls more than code that makes few: read the shares as where
  to look, the ``count`` figures as what things cost.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import anyio
from sqlalchemy import bindparam, event, text, update

from bastion.db.tables import utcnow
from bastion.jobs.store import JOBS, Outcome, enqueue_many
from benchmarks.jobs.bastion_app import app, noop, noop_sync
from benchmarks.jobs.common import server_cpu_seconds


def classify(statement: str) -> str:
    """A short name for one of the statements a worker sends."""
    text = " ".join(statement.split())
    upper = text.upper()
    if upper.startswith(("BEGIN", "SAVEPOINT", "RELEASE", "ROLLBACK")):
        return upper.split()[0] + (" IMMEDIATE" if "IMMEDIATE" in upper else "")
    jobs_update = upper.startswith("UPDATE BASTION_JOBS")
    if jobs_update and "SELECT" in upper and "RETURNING" in upper:
        return "claim: UPDATE bastion_jobs ... WHERE id IN (SELECT ... LIMIT n) RETURNING"
    if jobs_update and "FINISHED_AT" in upper and " IN (" in upper:
        return "settle, batch: UPDATE bastion_jobs SET status ... WHERE (id, claim_token) IN (...)"
    if jobs_update and ("FINISHED_AT" in upper or "SET CLAIM_TOKEN" in upper):
        return "settle, one job: UPDATE bastion_jobs SET ... WHERE id = ? AND claim_token = ?"
    if upper.startswith("UPDATE BASTION_JOBS SET LEASE_UNTIL"):
        return "extend: UPDATE bastion_jobs SET lease_until ... (heartbeat)"
    if upper.startswith("UPDATE BASTION_JOBS") and "LEASE_UNTIL <" in upper:
        return "reap: UPDATE bastion_jobs ... WHERE lease_until < now"
    return re.sub(r"\s+", " ", text)[:90]


class Counting:
    """SQL statements, commits and their wall time on one engine, from every thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statements: Counter[str] = Counter()
        self.statement_s: defaultdict[str, float] = defaultdict(float)
        self.commits = 0
        self.pings = 0
        self.connects = 0
        self.on = False

    def reset(self) -> dict[str, Any]:
        """What was counted so far, then zero."""
        with self.lock:
            counted = {
                "statements": dict(self.statements.most_common()),
                "statement_s": {k: round(v, 4) for k, v in self.statement_s.items()},
                "commits": self.commits,
                "pings": self.pings,
                "connects": self.connects,
            }
            self.statements.clear()
            self.statement_s.clear()
            self.commits = 0
            self.pings = 0
            self.connects = 0
        return counted

    def attach(self, engine: Any) -> None:
        # pool_pre_ping checks every connection taken from the pool with a round trip
        # of its own, outside the statement events: counted by wrapping the dialect.
        ping = engine.dialect.do_ping

        def counted_ping(dbapi_connection: Any) -> Any:
            if self.on:
                with self.lock:
                    self.pings += 1
            return ping(dbapi_connection)

        engine.dialect.do_ping = counted_ping

        @event.listens_for(engine, "before_cursor_execute")
        def _before(
            conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
        ) -> None:
            conn.info.setdefault("bench_t0", []).append(time.perf_counter())

        @event.listens_for(engine, "after_cursor_execute")
        def _after(
            conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
        ) -> None:
            elapsed = time.perf_counter() - conn.info["bench_t0"].pop()
            if not self.on:
                return
            kind = classify(statement)
            with self.lock:
                self.statements[kind] += 1
                self.statement_s[kind] += elapsed

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, record: Any) -> None:
            if self.on:
                with self.lock:
                    self.connects += 1

        @event.listens_for(engine, "commit")
        def _commit(conn: Any) -> None:
            if self.on:
                with self.lock:
                    self.commits += 1


def _wrap(
    target: Any, name: str, sizes: list[int], seconds: list[float], size: Callable[..., int]
) -> None:
    original = getattr(target, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = original(*args, **kwargs)
        seconds.append(time.perf_counter() - started)
        sizes.append(size(args, result))
        return result

    setattr(target, name, wrapper)


def claim_cost(runtime: Any, jobs: int, repeat: int = 30) -> dict[str, Any]:
    """Time ``repeat`` claims of 16 with ``jobs`` queued, and explain the claim query."""
    captured: list[tuple[str, Any]] = []

    @event.listens_for(runtime.database.write_engine, "before_cursor_execute")
    def _capture(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        if classify(statement).startswith("claim") and not captured:
            captured.append((statement, params))

    store = runtime.jobs.store
    if runtime.database.backend == "postgresql":
        # Fresh statistics, as autovacuum would gather them on a table that has grown.
        with runtime.database.write_engine.connect() as connection:
            connection.exec_driver_sql("ANALYZE bastion_jobs")
            connection.commit()
    handlers = {"default": app.jobs.handlers(["default"])}
    times = []
    held = []
    for _ in range(repeat):
        started = time.perf_counter()
        held += store.claim(handlers, 16, worker="probe", lease_s=300)
        times.append(time.perf_counter() - started)
    # Settling what was claimed, 32 outcomes per transaction: bastion's settle (one
    # UPDATE per outcome), then, for comparison only, the same UPDATE sent once with
    # many parameter sets (executemany) on the next claimed jobs.
    half = len(held) // 2
    outcomes = [Outcome(c.id, c.token, "succeeded") for c in held[:half]]
    started = time.perf_counter()
    for i in range(0, len(outcomes), 32):
        store.settle(outcomes[i : i + 32])
    settle_us = (time.perf_counter() - started) / max(1, len(outcomes)) * 1e6
    fenced = update(JOBS).where(
        JOBS.c.id == bindparam("b_id"), JOBS.c.claim_token == bindparam("b_token")
    )
    rest = held[half:]
    started = time.perf_counter()
    for i in range(0, len(rest), 32):
        with runtime.database.transaction() as session:
            now = utcnow()
            session.execute(
                fenced.values(
                    status="succeeded",
                    finished_at=now,
                    result=None,
                    claim_token=None,
                    lease_until=None,
                ),
                [{"b_id": c.id, "b_token": c.token} for c in rest[i : i + 32]],
            )
    many_us = (time.perf_counter() - started) / max(1, len(rest)) * 1e6
    statement, params = captured[0]
    postgres = runtime.database.backend == "postgresql"
    with runtime.database.write_engine.connect() as connection:
        if postgres:
            rows = connection.exec_driver_sql("EXPLAIN " + statement, params).all()
            plan = [
                re.sub(r"\s*\(cost=[^)]*\)", "", r[0]).strip(" ->")
                for r in rows
                if "Scan" in r[0] or "Sort" in r[0]
            ]
        else:
            rows = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()
            plan = [str(r[-1]) for r in rows]
        connection.rollback()
    ordered = sorted(times)
    return {
        "queued": jobs,
        "claims": repeat,
        "median_ms": round(ordered[len(ordered) // 2] * 1000, 3),
        "plan": plan,
        "settle_us_per_job": round(settle_us, 1),
        "executemany_us_per_job": round(many_us, 1),
        "settled": len(outcomes) + len(rest),
    }


async def run(
    url: str,
    jobs: int,
    flavour: str,
    concurrency: int,
    mode: str,
    single: int,
    pool_size: int | None = None,
) -> dict[str, Any]:
    overrides: dict[str, Any] = {"database": {"url": url}, "log": {"level": "WARNING"}}
    if pool_size is not None:
        overrides["database"]["pool_size"] = pool_size
    settings = app.load_settings(environ={}, overrides=overrides)
    runtime = app.runtime(settings)
    job = noop if flavour == "async" else noop_sync
    counting = Counting()
    counting.attach(runtime.database.write_engine)

    # One job per transaction, as a mutation enqueues: counted, then deleted.
    enqueue: dict[str, Any] = {"jobs": single}
    if single:
        counting.on = True
        started = time.perf_counter()
        for i in range(single):
            with runtime.database.transaction() as session:
                job.enqueue(session, n=i)
        enqueue["seconds"] = round(time.perf_counter() - started, 4)
        counting.on = False
        enqueue |= counting.reset()
        with runtime.database.transaction() as session:
            session.execute(text("DELETE FROM bastion_jobs"))

    with runtime.database.transaction() as session:
        enqueue_many(session, job.spec, [{"n": i} for i in range(jobs)])
    if runtime.database.backend == "postgresql" and mode != "claim":
        # As the runner does before starting workers (claim_cost does its own).
        with runtime.database.write_engine.connect() as connection:
            connection.exec_driver_sql("ANALYZE bastion_jobs")
            connection.commit()
    if mode == "claim":
        claim = claim_cost(runtime, jobs)
        await anyio.to_thread.run_sync(runtime.database.dispose)
        return {"backend": runtime.database.backend, "mode": mode, "jobs": jobs, **claim}
    store = runtime.jobs.store
    claims: list[int] = []
    claim_s: list[float] = []
    settles: list[int] = []
    settle_s: list[float] = []
    if mode == "count":  # under yappi the wrappers would only add noise
        _wrap(store, "claim", claims, claim_s, lambda args, result: len(result))
        _wrap(store, "settle", settles, settle_s, lambda args, result: len(list(args[0])))

    if mode == "yappi":
        import yappi

        yappi.set_clock_type("cpu")
        yappi.start(builtins=True, profile_threads=True)
    postgres = runtime.database.backend == "postgresql"
    server_before = server_cpu_seconds("postgres") if postgres else 0.0
    cpu_before = time.process_time()
    counting.on = True
    started = time.perf_counter()
    worker = runtime.jobs.worker(concurrency=concurrency)
    async with anyio.create_task_group() as group:
        await group.start(worker.run)
        # Polled, not awaited: the worker has no "settled" event to wait on.
        while True:
            if worker.settled >= jobs:
                break
            await anyio.sleep(0.005)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_before
        server = (server_cpu_seconds("postgres") - server_before) if postgres else None
        counting.on = False
        worker.stop()
    profile = None
    if mode == "yappi":
        import yappi

        from benchmarks.profile_server import collect

        yappi.stop()
        profile = collect(40)
    await anyio.to_thread.run_sync(runtime.database.dispose)
    return {
        "backend": runtime.database.backend,
        "flavour": flavour,
        "mode": mode,
        "jobs": jobs,
        "concurrency": concurrency,
        "batch_size": settings.jobs.batch_size,
        "pool_size": settings.database.pool_size,
        "max_overflow": settings.database.max_overflow,
        "seconds": round(elapsed, 3),
        "jobs_per_s": round(jobs / elapsed, 1),
        "process_cpu_us_per_job": round(cpu / jobs * 1e6, 1),
        "process_cpu_share": round(cpu / elapsed, 3),
        "server_cpu_us_per_job": None if server is None else round(server / jobs * 1e6, 1),
        **counting.reset(),
        "claims": len(claims),
        "claimed": sum(claims),
        "empty_claims": sum(1 for c in claims if c == 0),
        "claim_s": round(sum(claim_s), 4),
        "settles": len(settles),
        "settled": sum(settles),
        "settle_s": round(sum(settle_s), 4),
        "enqueue": enqueue,
        "profile": profile,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--flavour", choices=["async", "sync"], default="async")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--mode", choices=["count", "yappi", "claim"], default="count")
    parser.add_argument("--pool-size", type=int, default=None, help="[database] pool_size")
    parser.add_argument(
        "--single", type=int, default=0, help="first count this many one-per-transaction enqueues"
    )
    args = parser.parse_args()
    result = anyio.run(
        run,
        args.url,
        args.jobs,
        args.flavour,
        args.concurrency,
        args.mode,
        args.single,
        args.pool_size,
    )
    print("BENCH_JSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
