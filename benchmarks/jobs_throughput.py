"""Jobs benchmark: enqueue→complete throughput and enqueue→start latency (issue #4).

Run from the repository root::

    .venv/bin/python benchmarks/jobs_throughput.py            # about 12 minutes
    .venv/bin/python benchmarks/jobs_throughput.py --reps 5   # about 15 minutes
    .venv/bin/python benchmarks/jobs_throughput.py --quick    # a smoke run, under a minute

Systems, all on this machine in the same run:

- ``bastion_sqlite`` / ``bastion_sqlite_sync``: bastion's worker on a fresh SQLite file
  (WAL), running the ``async def`` no-op (no transaction, completions acked in
  batches) or the plain ``def`` no-op (a transaction per job that also records its
  completion).
- ``bastion_postgres`` / ``bastion_postgres_sync``: the same on a fresh PostgreSQL
  database.
- ``celery``: Celery with a Redis broker, ``task_acks_late=True``, prefetch
  multiplier 4 (its default), no result backend, the threads pool.
- ``procrastinate``: procrastinate on a fresh PostgreSQL database of its own, async
  no-op task.

Every worker process runs 16 jobs at once (``--concurrency``): bastion's
``--concurrency``, Celery's ``--pool threads --concurrency``, procrastinate's
``--concurrency``. Workers are separate processes started by their own CLI
(``bastion worker``, ``celery worker``, ``procrastinate worker``).

Throughput, per repetition, per system, with 1 and then 2 worker processes: make a
fresh store (file, database or Redis keys), enqueue N no-op jobs the fastest way the
system offers (timed: the bulk enqueue rate), ANALYZE the job table on PostgreSQL (as
autovacuum would on a live queue), start the worker processes, and poll
the number of completed jobs every 20 ms from this process (bastion and
procrastinate: ``count(*)`` of rows with status ``succeeded``; Celery: N minus the
queue's length minus Redis' ``unacked`` hash, i.e. messages acked, which with late
acks happens after the task returned). The rate is measured from the first poll
that sees a completed job to the poll that sees all N, so process start-up is not
part of it (it is reported separately). Afterwards every system's own record is
checked: N rows succeeded, or N tasks counted by the Celery workers. The median over
repetitions is reported; the order of the systems rotates every repetition.

Enqueue: besides the bulk rate, M = min(N, 1000) jobs enqueued one per transaction
(or one broker call each), sequentially from this process.

Latency: one idle worker process, then 200 ``stamp`` jobs enqueued
one at a time with a random pause before each; each job's first statement reads
the wall clock and pushes it to a Redis list that this process waits on with BLPOP.
Latency = that start time minus the wall clock just before the enqueue call (so the
enqueue's own commit counts). The pause is random over at least one poll interval,
so pollers are not measured in phase with their timer. bastion on SQLite across
processes polls (``[jobs] poll_interval_s``, default 1.0 s): it is measured with the
default and with 0.05 s, and with the worker embedded in the enqueuing process (how
``bastion run --embedded-worker`` runs on SQLite), where a commit wakes it at once.

Where the time goes (``benchmarks/jobs/profile_worker.py``): one bastion worker run in
process per backend and flavour, counting SQL statements, commits, pool pings, new
connections and CPU per job (the sync flavour on PostgreSQL once more with a pool as
large as the concurrency); 30 claims against a backlog of N and of 10 N, with the
claim's query plan; and one run per backend under yappi.

Every process imports bastion from a copy of src/ taken at the start (``--live-src``
to use src/ itself): other engineers commit while this runs, and one run must measure
one version of the code.

Results: benchmarks/results/jobs_throughput.json and jobs_throughput.md. PostgreSQL
(``--postgres-url``, trust auth) gets databases ``bench_jobs_*`` created and dropped;
Redis (``--redis-url``, database 5 by default) gets only its own keys deleted.
Every child runs in its own process group and is stopped on the way out.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib.metadata
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import request_path as rp

ROOT = rp.ROOT
BIN = Path(sys.executable).parent
SECRET = rp.SECRET
POLL_S = 0.02
PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_DEFAULT = "redis://127.0.0.1:6379/5"
BASTION_DB = "bench_jobs_bastion"
PROCRASTINATE_DB = "bench_jobs_procrastinate"
VERSIONS = (
    "bastion",
    "sqlalchemy",
    "psycopg",
    "psycopg-pool",
    "anyio",
    "pydantic",
    "structlog",
    "celery",
    "kombu",
    "redis",
    "procrastinate",
    "yappi",
)
TARGETS = {
    "bastion_sqlite": "bastion, SQLite, async no-op",
    "bastion_sqlite_sync": "bastion, SQLite, sync (transactional) no-op",
    "bastion_postgres": "bastion, PostgreSQL, async no-op",
    "bastion_postgres_sync": "bastion, PostgreSQL, sync (transactional) no-op",
    "celery": "Celery, Redis broker, acks_late, threads pool",
    "procrastinate": "procrastinate, PostgreSQL, async no-op",
}
LATENCY_TARGETS = {
    "bastion_postgres": "bastion, PostgreSQL (LISTEN/NOTIFY wake-up)",
    "bastion_sqlite": "bastion, SQLite, worker process polling every 1.0 s (default)",
    "bastion_sqlite_poll50ms": "bastion, SQLite, worker process, poll_interval_s = 0.05",
    "bastion_sqlite_embedded": "bastion, SQLite, worker embedded in the enqueuing process",
    "celery": "Celery, Redis broker (BRPOP)",
    "procrastinate": "procrastinate, PostgreSQL (LISTEN/NOTIFY wake-up)",
}
ENQUEUE_TARGETS = ("bastion_sqlite", "bastion_postgres", "celery", "procrastinate")
# (mine, base, target ratio or None)
RATIOS = (
    ("bastion_postgres", "procrastinate", 2.0),
    ("bastion_postgres", "celery", 1.0),
    ("bastion_sqlite", "procrastinate", None),
    ("bastion_sqlite", "celery", None),
    ("bastion_postgres_sync", "procrastinate", None),
    ("bastion_postgres_sync", "celery", None),
)
SQLITE_TARGET = 2000.0


# --- the systems ----------------------------------------------------------------------


class Options:
    """What every system needs to know about the run."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.postgres_url: str = args.postgres_url
        self.redis_url: str = args.redis_url
        self.concurrency: int = args.concurrency
        self.workdir = workdir
        self.counter = 0
        #: A copy of src/ every process imports bastion from (None: the live src/).
        self.src: Path | None = None

    def postgres(self, database: str) -> str:
        from sqlalchemy.engine import make_url

        return make_url(self.postgres_url).set(database=database).render_as_string(False)

    def fresh_name(self, stem: str) -> str:
        self.counter += 1
        return f"{stem}-{self.counter}"


class System(Protocol):
    """One job system: a fresh store, enqueueing, counting, worker processes."""

    backend: str  # whose server CPU counts: "sqlite" (none), "postgres" or "redis-server"

    def prepare(self) -> None: ...
    def enqueue_bulk(self, n: int) -> None: ...
    def analyze(self) -> None: ...
    def enqueue_single(self, m: int) -> None: ...
    def enqueue_stamp(self, i: int) -> None: ...
    def completed(self, n: int) -> int: ...
    def worker(self, index: int, poll_interval_s: float | None = None) -> list[str]: ...
    def worker_env(self, poll_interval_s: float | None = None) -> dict[str, str]: ...
    def verify(self, n: int) -> dict[str, Any]: ...
    def close(self) -> None: ...


def _base_env(options: Options) -> dict[str, str]:
    # The caller's environment minus every BASTION_* variable, so a developer's own
    # settings cannot leak into a measurement.
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(p) for p in (options.src, ROOT) if p is not None]),
            "PYTHONDONTWRITEBYTECODE": "1",
            "BENCH_REDIS_URL": options.redis_url,
        }
    )
    return env


def _pg_admin(options: Options, *statements: str) -> None:
    import psycopg

    with psycopg.connect(options.postgres_url, autocommit=True) as connection:
        for statement in statements:
            connection.execute(statement)


class Bastion:
    """bastion's worker, ``bastion worker benchmarks.jobs.bastion_app:app``."""

    def __init__(self, options: Options, backend: str, flavour: str) -> None:
        self.options = options
        self.backend = "postgres" if backend == "postgresql" else "sqlite"
        self.flavour = flavour
        self.url = ""
        self.runtime: Any = None
        self.sqlite_file: Path | None = None

    def prepare(self) -> None:
        from benchmarks.jobs.bastion_app import app

        if self.backend == "postgres":
            _pg_admin(
                self.options,
                f"DROP DATABASE IF EXISTS {BASTION_DB} WITH (FORCE)",
                f"CREATE DATABASE {BASTION_DB}",
            )
            self.url = self.options.postgres(BASTION_DB)
        else:
            self.sqlite_file = self.options.workdir / (
                self.options.fresh_name("bastion") + ".sqlite3"
            )
            self.url = f"sqlite:///{self.sqlite_file}"
        settings = app.load_settings(
            environ={}, overrides={"database": {"url": self.url}, "log": {"level": "WARNING"}}
        )
        self.runtime = app.runtime(settings)
        self.runtime.migrator().upgrade()

    def _job(self) -> Any:
        from benchmarks.jobs.bastion_app import noop, noop_sync

        return noop if self.flavour == "async" else noop_sync

    def enqueue_bulk(self, n: int) -> None:
        from bastion.jobs.store import enqueue_many

        with self.runtime.database.transaction() as session:
            enqueue_many(session, self._job().spec, [{"n": i} for i in range(n)])

    def analyze(self) -> None:
        if self.backend == "postgres":
            from sqlalchemy import text

            with self.runtime.database.write_engine.connect() as connection:
                connection.execute(text("ANALYZE bastion_jobs"))
                connection.commit()

    def enqueue_single(self, m: int) -> None:
        job = self._job()
        for i in range(m):
            with self.runtime.database.transaction() as session:
                job.enqueue(session, n=i)

    def enqueue_stamp(self, i: int) -> None:
        from benchmarks.jobs.bastion_app import stamp

        with self.runtime.database.transaction() as session:
            stamp.enqueue(session, i=i)

    def _count(self, sql: str) -> int:
        from sqlalchemy import text

        with self.runtime.database.read_engine.connect() as connection:
            return int(connection.execute(text(sql)).scalar_one())

    def completed(self, n: int) -> int:
        return self._count("SELECT count(*) FROM bastion_jobs WHERE status = 'succeeded'")

    def worker(self, index: int, poll_interval_s: float | None = None) -> list[str]:
        return [
            str(BIN / "bastion"),
            "worker",
            "benchmarks.jobs.bastion_app:app",
            "--concurrency",
            str(self.options.concurrency),
        ]

    def worker_env(self, poll_interval_s: float | None = None) -> dict[str, str]:
        env = _base_env(self.options)
        env.update(
            {
                "BASTION_ENV": "production",
                "BASTION_APP_SECRET_KEY": SECRET,
                "BASTION_DATABASE_URL": self.url,
                "BASTION_LOG_FORMAT": "json",
                "BASTION_LOG_LEVEL": "INFO",
                "BASTION_LOG_FILE": str(self.options.workdir / "bastion-worker.log"),
            }
        )
        if poll_interval_s is not None:
            env["BASTION_JOBS_POLL_INTERVAL_S"] = str(poll_interval_s)
        return env

    def verify(self, n: int) -> dict[str, Any]:
        succeeded = self.completed(n)
        other = self._count("SELECT count(*) FROM bastion_jobs WHERE status <> 'succeeded'")
        return {"ok": succeeded == n and other == 0, "check": f"{succeeded} succeeded rows"}

    def close(self) -> None:
        if self.runtime is not None:
            self.runtime.database.dispose()
            self.runtime = None
        if self.backend == "postgres":
            _pg_admin(self.options, f"DROP DATABASE IF EXISTS {BASTION_DB} WITH (FORCE)")
        elif self.sqlite_file is not None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.sqlite_file}{suffix}").unlink(missing_ok=True)


class CelerySystem:
    """Celery, ``celery -A benchmarks.jobs.celery_app worker --pool threads``."""

    backend = "redis-server"

    def __init__(self, options: Options) -> None:
        self.options = options

    def _clear(self) -> None:
        # Not FLUSHDB: this process's producer remembers the exchange bindings it
        # declared (kombu's _kombu.binding.* keys), and must keep finding them.
        from benchmarks.jobs.common import client

        keys = [k for k in client().scan_iter() if not k.startswith(b"_kombu.binding")]
        if keys:
            client().delete(*keys)

    def prepare(self) -> None:
        self._clear()

    def enqueue_bulk(self, n: int) -> None:
        # Celery has no bulk enqueue: one LPUSH round trip per message.
        self.enqueue_single(n)

    def analyze(self) -> None:
        pass

    def enqueue_single(self, m: int) -> None:
        from benchmarks.jobs.celery_app import noop

        for i in range(m):
            noop.delay(i)

    def enqueue_stamp(self, i: int) -> None:
        from benchmarks.jobs.celery_app import stamp

        stamp.delay(i)

    def completed(self, n: int) -> int:
        from benchmarks.jobs.celery_app import QUEUE
        from benchmarks.jobs.common import client

        with client().pipeline(transaction=False) as pipe:
            pipe.llen(QUEUE)
            pipe.hlen("unacked")
            queued, unacked = pipe.execute()
        return n - int(queued) - int(unacked)

    def worker(self, index: int, poll_interval_s: float | None = None) -> list[str]:
        return [
            str(BIN / "celery"),
            "-A",
            "benchmarks.jobs.celery_app",
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            str(self.options.concurrency),
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "WARNING",
            "-n",
            f"bench{index}@%h",
        ]

    def worker_env(self, poll_interval_s: float | None = None) -> dict[str, str]:
        env = _base_env(self.options)
        env["BENCH_CELERY_BROKER"] = self.options.redis_url
        return env

    def verify(self, n: int) -> dict[str, Any]:
        from benchmarks.jobs.celery_app import RAN_KEY
        from benchmarks.jobs.common import client

        ran = int(client().get(RAN_KEY) or 0)
        return {"ok": ran == n, "check": f"{ran} tasks counted by the workers"}

    def close(self) -> None:
        self._clear()


class Procrastinate:
    """procrastinate, ``procrastinate --app benchmarks.jobs.procrastinate_app.app worker``."""

    backend = "postgres"

    def __init__(self, options: Options) -> None:
        self.options = options
        self.dsn = options.postgres(PROCRASTINATE_DB)
        self.connection: Any = None
        self.opened = False

    def prepare(self) -> None:
        import psycopg

        from benchmarks.jobs.procrastinate_app import app

        _pg_admin(
            self.options,
            f"DROP DATABASE IF EXISTS {PROCRASTINATE_DB} WITH (FORCE)",
            f"CREATE DATABASE {PROCRASTINATE_DB}",
        )
        app.open()
        self.opened = True
        app.schema_manager.apply_schema()
        self.connection = psycopg.connect(self.dsn, autocommit=True)

    def enqueue_bulk(self, n: int) -> None:
        from procrastinate.types import JSONDict

        from benchmarks.jobs.procrastinate_app import noop

        rows: list[JSONDict] = [{"n": i} for i in range(n)]
        noop.batch_defer(*rows)

    def analyze(self) -> None:
        self.connection.execute("ANALYZE procrastinate_jobs")

    def enqueue_single(self, m: int) -> None:
        from benchmarks.jobs.procrastinate_app import noop

        for i in range(m):
            noop.defer(n=i)

    def enqueue_stamp(self, i: int) -> None:
        from benchmarks.jobs.procrastinate_app import stamp

        stamp.defer(i=i)

    def _count(self, where: str) -> int:
        row = self.connection.execute(
            f"SELECT count(*) FROM procrastinate_jobs WHERE {where}"
        ).fetchone()
        return int(row[0])

    def completed(self, n: int) -> int:
        return self._count("status = 'succeeded'")

    def worker(self, index: int, poll_interval_s: float | None = None) -> list[str]:
        return [
            str(BIN / "procrastinate"),
            "--app",
            "benchmarks.jobs.procrastinate_app.app",
            "--log-level",
            "warning",
            "worker",
            "--concurrency",
            str(self.options.concurrency),
        ]

    def worker_env(self, poll_interval_s: float | None = None) -> dict[str, str]:
        env = _base_env(self.options)
        env["BENCH_PROCRASTINATE_DSN"] = self.dsn
        return env

    def verify(self, n: int) -> dict[str, Any]:
        succeeded = self.completed(n)
        other = self._count("status <> 'succeeded'")
        return {"ok": succeeded == n and other == 0, "check": f"{succeeded} succeeded rows"}

    def close(self) -> None:
        from benchmarks.jobs.procrastinate_app import app

        if self.connection is not None:
            self.connection.close()
            self.connection = None
        if self.opened:
            app.close()
            self.opened = False
        _pg_admin(self.options, f"DROP DATABASE IF EXISTS {PROCRASTINATE_DB} WITH (FORCE)")


def make_system(key: str, options: Options) -> System:
    if key.startswith("bastion_"):
        backend = "postgresql" if "postgres" in key else "sqlite"
        return Bastion(options, backend, "sync" if key.endswith("_sync") else "async")
    if key == "celery":
        return CelerySystem(options)
    if key == "procrastinate":
        return Procrastinate(options)
    raise ValueError(key)


# --- stopping and the code under test -------------------------------------------------

_stop_requested = False


def _on_signal(signum: int, _frame: Any) -> None:
    """SIGTERM/SIGHUP unwind like Ctrl-C; the flag makes a swallowed interrupt count."""
    global _stop_requested
    _stop_requested = True
    raise KeyboardInterrupt(f"signal {signum}")


def _check_stop() -> None:
    if _stop_requested:
        raise KeyboardInterrupt("stop requested")


def code_fingerprint(src: Path) -> str:
    """A hash of bastion's source files under ``src`` (other engineers edit src/ while
    this runs)."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((src / "bastion").rglob("*.py")):
        digest.update(str(path.relative_to(src)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def snapshot_source(workdir: Path) -> Path:
    """Copy src/bastion into ``workdir`` and import bastion from there, here and in every
    child (PYTHONPATH comes before the editable install's path): the whole run measures
    one version of the code, whatever is committed meanwhile."""
    src = workdir / "src"
    shutil.copytree(
        ROOT / "src" / "bastion", src / "bastion", ignore=shutil.ignore_patterns("__pycache__")
    )
    sys.path.insert(0, str(src))
    import bastion

    if not str(bastion.__file__).startswith(str(src)):
        raise RuntimeError(f"bastion was imported from {bastion.__file__}, not the snapshot")
    return src


# --- worker processes -------------------------------------------------------------------


def _start_workers(
    system: System, count: int, workdir: Path, tag: str, poll_interval_s: float | None = None
) -> list[tuple[subprocess.Popen[bytes], Path]]:
    env = system.worker_env(poll_interval_s)
    started = []
    for index in range(count):
        log = workdir / f"{tag}-worker{index}.txt"
        with log.open("wb") as out:
            process = rp._spawn(
                system.worker(index, poll_interval_s),
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        started.append((process, log))
    return started


def _stop_workers(workers: list[tuple[subprocess.Popen[bytes], Path]]) -> None:
    """SIGTERM to every worker at once (a graceful stop: Celery's workers report their
    count on the way out), then wait up to 30 s before SIGKILL."""
    for process, _log in workers:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    for process, _log in workers:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        rp._kill(process)


def _check_alive(workers: list[tuple[subprocess.Popen[bytes], Path]]) -> None:
    for process, log in workers:
        if process.poll() is not None:
            raise RuntimeError(f"worker exited with {process.returncode}:\n{rp._tail(log)}")


def _server_cpu(backend: str) -> float:
    from benchmarks.jobs.common import server_cpu_seconds

    return 0.0 if backend == "sqlite" else server_cpu_seconds(backend)


def _process_cpu(pid: int) -> float:
    try:
        return float(rp._cpu_seconds(pid))
    except OSError:
        return float("nan")


# --- phases -----------------------------------------------------------------------------


def run_enqueue(key: str, options: Options, n: int, m: int, rep: int) -> dict[str, Any]:
    """Single then bulk enqueue rates, on a fresh store each."""
    system = make_system(key, options)
    system.prepare()
    try:
        started = time.perf_counter()
        system.enqueue_single(m)
        single_s = time.perf_counter() - started
    finally:
        system.close()
    bulk_s = None
    if key != "celery":  # Celery has no bulk enqueue; its preload is single calls
        system.prepare()
        try:
            started = time.perf_counter()
            system.enqueue_bulk(n)
            bulk_s = time.perf_counter() - started
        finally:
            system.close()
    return {
        "rep": rep,
        "target": key,
        "single_jobs": m,
        "single_per_s": round(m / single_s, 1),
        "bulk_jobs": n if bulk_s is not None else None,
        "bulk_per_s": round(n / bulk_s, 1) if bulk_s is not None else None,
    }


def run_throughput(
    key: str, options: Options, n: int, workers: int, rep: int, timeout_s: float
) -> dict[str, Any]:
    """Enqueue ``n`` no-ops, start ``workers`` processes, time until all are done."""
    system = make_system(key, options)
    system.prepare()
    load_before = round(os.getloadavg()[0], 2)
    try:
        started = time.perf_counter()
        system.enqueue_bulk(n)
        preload_s = time.perf_counter() - started
        # Statistics for the planner, as autovacuum gathers them on a live queue table.
        system.analyze()
        if system.completed(n) != 0:
            raise RuntimeError(f"{key}: jobs completed before any worker started")
        procs = _start_workers(system, workers, options.workdir, f"{key}-w{workers}-r{rep}")
        spawned = time.perf_counter()
        first: tuple[float, int] | None = None
        cpu_at_first = (0.0, 0.0)
        polls = 0
        try:
            while True:
                done = system.completed(n)
                now = time.perf_counter()
                polls += 1
                if first is None and done > 0:
                    first = (now, done)
                    # CPU is counted over the measured window only, like the rate.
                    cpu_at_first = (
                        sum(_process_cpu(p.pid) for p, _ in procs),
                        _server_cpu(system.backend),
                    )
                if done >= n:
                    break
                _check_alive(procs)
                _check_stop()
                if now - spawned > timeout_s:
                    raise RuntimeError(f"{key}: {done}/{n} jobs done after {timeout_s:.0f} s")
                time.sleep(POLL_S)
            worker_cpu = sum(_process_cpu(p.pid) for p, _ in procs) - cpu_at_first[0]
            server_cpu = _server_cpu(system.backend) - cpu_at_first[1]
        finally:
            _stop_workers(procs)
        verified = system.verify(n)
    finally:
        system.close()
    assert first is not None
    measured_s = now - first[0]
    in_window = n - first[1]
    steady = in_window / measured_s if measured_s > 0 else n / (now - spawned)
    return {
        "rep": rep,
        "target": key,
        "workers": workers,
        "jobs": n,
        "jobs_per_s": round(steady, 1),
        "jobs_per_s_incl_startup": round(n / (now - spawned), 1),
        "startup_s": round(first[0] - spawned, 3),
        "measured_s": round(measured_s, 3),
        "done_at_first_poll": first[1],
        "preload_per_s": round(n / preload_s, 1),
        # CPU over the measured window, per job completed in it.
        "worker_cpu_us_per_job": round(worker_cpu / max(1, in_window) * 1e6, 1),
        "worker_cpu_share": round(worker_cpu / measured_s, 2) if measured_s > 0 else None,
        "server_cpu_us_per_job": (
            None if system.backend == "sqlite" else round(server_cpu / max(1, in_window) * 1e6, 1)
        ),
        "polls": polls,
        "verified": verified["ok"],
        "check": verified["check"],
        "loadavg_1m_before": load_before,
    }


def run_latency(key: str, options: Options, count: int) -> dict[str, Any]:
    """Enqueue→start latency of ``count`` jobs sent one at a time to an idle worker."""
    from benchmarks.jobs.common import STARTS_KEY, client, wait_start

    system_key = "bastion_sqlite" if key.startswith("bastion_sqlite") else key
    poll = {"bastion_sqlite": 1.0, "bastion_sqlite_poll50ms": 0.05}.get(key)
    # A random pause over at least one poll interval: a poller is not sampled in
    # phase with its timer.
    gap = (0.05, 0.05 + max(0.2, poll or 0.0))
    system = make_system(system_key, options)
    system.prepare()
    latencies: list[float] = []
    try:
        client().delete(STARTS_KEY)
        if key == "bastion_sqlite_embedded":
            assert isinstance(system, Bastion)
            measured = rp._bench_json(
                rp._run_bounded(
                    [
                        sys.executable,
                        "-m",
                        "benchmarks.jobs.embedded",
                        "--url",
                        system.url,
                        "--count",
                        str(count),
                        "--gap-min",
                        str(gap[0]),
                        "--gap-max",
                        str(gap[1]),
                    ],
                    env=_base_env(options),
                    timeout=120 + count * 2,
                )
            )
            latencies = measured["latencies_s"]
        else:
            procs = _start_workers(system, 1, options.workdir, f"latency-{key}", poll)
            try:
                system.enqueue_stamp(-1)  # warm-up: the worker is up and idle after it
                wait_start(-1, 60.0)
                for i in range(count):
                    _check_stop()
                    time.sleep(random.uniform(*gap))
                    sent = time.time()
                    system.enqueue_stamp(i)
                    latencies.append(wait_start(i, 30.0) - sent)
                _check_alive(procs)
            finally:
                _stop_workers(procs)
    finally:
        system.close()
    return {"target": key, "poll_interval_s": poll, "gap_s": gap, **_percentiles(latencies)}


def _percentiles(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]

    return {
        "count": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(at(0.95) * 1000, 2),
        "p99_ms": round(at(0.99) * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 2),
        "min_ms": round(ordered[0] * 1000, 2),
    }


def run_profile(
    key: str, options: Options, n: int, mode: str, pool_size: int | None = None
) -> dict[str, Any]:
    """One in-process bastion run on a fresh store (``benchmarks/jobs/profile_worker.py``):
    counted, under yappi, or claims only."""
    system = make_system(key, options)
    assert isinstance(system, Bastion)
    system.prepare()
    command = [
        sys.executable,
        "-m",
        "benchmarks.jobs.profile_worker",
        "--url",
        system.url,
        "--jobs",
        str(n),
        "--flavour",
        system.flavour,
        "--concurrency",
        str(options.concurrency),
        "--mode",
        mode,
        "--single",
        str(min(n, 1000) if mode == "count" and pool_size is None else 0),
    ]
    if pool_size is not None:
        command += ["--pool-size", str(pool_size)]
    try:
        system.runtime.database.dispose()  # the child has the database to itself
        result: dict[str, Any] = rp._bench_json(
            rp._run_bounded(command, env=_base_env(options), timeout=900)
        )
    finally:
        system.close()
    result["target"] = key
    result["label"] = key + (f", pool_size {pool_size}" if pool_size is not None else "")
    return result


# --- summary ----------------------------------------------------------------------------


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Medians per (target, workers)."""
    summary: dict[str, dict[str, Any]] = {}
    for run in runs:
        summary.setdefault(run["target"], {}).setdefault(str(run["workers"]), [])
        summary[run["target"]][str(run["workers"])].append(run)
    out: dict[str, dict[str, Any]] = {}
    for key, by_workers in summary.items():
        out[key] = {}
        for workers, mine in by_workers.items():
            rates = [r["jobs_per_s"] for r in mine]
            server = [r["server_cpu_us_per_job"] for r in mine if r["server_cpu_us_per_job"]]
            out[key][workers] = {
                "reps": len(mine),
                "jobs_per_s": round(statistics.median(rates), 1),
                "min": min(rates),
                "max": max(rates),
                "jobs_per_s_incl_startup": round(
                    statistics.median(r["jobs_per_s_incl_startup"] for r in mine), 1
                ),
                "startup_s": round(statistics.median(r["startup_s"] for r in mine), 2),
                "worker_cpu_us_per_job": round(
                    statistics.median(r["worker_cpu_us_per_job"] for r in mine), 1
                ),
                "worker_cpu_share": round(
                    statistics.median(r["worker_cpu_share"] or 0.0 for r in mine), 2
                ),
                "server_cpu_us_per_job": round(statistics.median(server), 1) if server else None,
                "verified": all(r["verified"] for r in mine),
            }
    return out


def ratios(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for mine, base, target in RATIOS:
        if mine not in summary or base not in summary:
            continue
        for workers in sorted(set(summary[mine]) & set(summary[base])):
            value = summary[mine][workers]["jobs_per_s"] / summary[base][workers]["jobs_per_s"]
            out.append(
                {
                    "ratio": f"{mine}/{base}",
                    "workers": int(workers),
                    "value": round(value, 2),
                    "target": target,
                    "met": None if target is None else value >= target,
                }
            )
    return out


def summarize_enqueue(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key in dict.fromkeys(r["target"] for r in runs):
        mine = [r for r in runs if r["target"] == key]
        bulk = [r["bulk_per_s"] for r in mine if r["bulk_per_s"] is not None]
        out[key] = {
            "single_per_s": round(statistics.median(r["single_per_s"] for r in mine), 1),
            "single_jobs": mine[0]["single_jobs"],
            "bulk_per_s": round(statistics.median(bulk), 1) if bulk else None,
            "bulk_jobs": mine[0]["bulk_jobs"],
        }
    return out


# --- report -----------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _profile_lines(profiles: list[dict[str, Any]]) -> list[str]:
    counted = [p for p in profiles if p["mode"] == "count"]
    claims = [p for p in profiles if p["mode"] == "claim"]
    lines: list[str] = []
    if counted:
        lines += [
            "### Per job, one worker in process (no profiler)",
            "",
            "`benchmarks/jobs/profile_worker.py --mode count`: N jobs enqueued in one "
            "transaction, then one `runtime.jobs.worker(concurrency=16)` in the same process "
            "until all are settled (default settings unless the row says otherwise). "
            "Statements are the worker's write engine's, timed from the driver call to its "
            "return (wall clock; threads overlap). Pool pings are `pool_pre_ping`'s round "
            "trips, one per connection taken from the pool; new connections are opened "
            "during the run. *settler busy* is the wall time spent inside `JobStore.settle` "
            "over the run's wall time.",
            "",
            "| run | jobs/s | worker CPU µs/job | CPU share | PostgreSQL CPU µs/job | "
            "commits/job | statements/job | pool pings/job | new connections | "
            "claims (avg jobs) | settle txns (avg jobs) | settler busy |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for p in counted:
            jobs = p["jobs"]
            statements = sum(p["statements"].values())
            busy = f"{p['settle_s'] / p['seconds']:.0%}" if p["settles"] else "-"
            lines.append(
                f"| {p['label']} | {p['jobs_per_s']:,.0f} | {p['process_cpu_us_per_job']:.0f} "
                f"| {p['process_cpu_share']:.2f} | {_fmt(p['server_cpu_us_per_job'])} | "
                f"{p['commits'] / jobs:.3f} | {statements / jobs:.2f} | "
                f"{p['pings'] / jobs:.3f} | {p['connects']} | "
                f"{p['claims']} ({p['claimed'] / max(1, p['claims']):.1f}) | "
                f"{p['settles']} ({p['settled'] / max(1, p['settles']):.1f}) | {busy} |"
            )
        for p in counted:
            lines += [
                "",
                f"Statements of `{p['label']}` ({p['jobs']} jobs, {p['seconds']} s):",
                "",
                "| statement | count | per job | wall s in the driver | µs each |",
                "| --- | ---: | ---: | ---: | ---: |",
            ]
            for kind, count in p["statements"].items():
                spent = p["statement_s"].get(kind, 0.0)
                lines.append(
                    f"| `{kind}` | {count} | {count / p['jobs']:.3f} | {spent:.3f} | "
                    f"{spent / count * 1e6:.0f} |"
                )
            lines.append(f"| COMMIT | {p['commits']} | {p['commits'] / p['jobs']:.3f} | | |")
        enqueues = [p for p in counted if p.get("enqueue", {}).get("jobs")]
        if enqueues:
            lines += [
                "",
                "### Enqueue, one job per transaction (as a mutation does)",
                "",
                "| backend | jobs | µs per enqueue | statements per enqueue | commits | "
                "pool pings |",
                "| --- | ---: | ---: | --- | ---: | ---: |",
            ]
            seen = set()
            for p in enqueues:
                if p["backend"] in seen:
                    continue
                seen.add(p["backend"])
                e = p["enqueue"]
                kinds = "; ".join(
                    f"`{k[:40]}...`: {v / e['jobs']:.0f}" for k, v in e["statements"].items()
                )
                lines.append(
                    f"| {p['backend']} | {e['jobs']} | {e['seconds'] / e['jobs'] * 1e6:.0f} | "
                    f"{kinds} | {e['commits']} | {e['pings']} |"
                )
    if claims:
        lines += [
            "",
            "### Claim cost against the backlog",
            "",
            "`profile_worker.py --mode claim`: no worker; 30 claims of 16 jobs by "
            "`JobStore.claim` with the given number of jobs queued (median), the claim "
            "statement's plan (PostgreSQL: after ANALYZE), then the claimed jobs settled "
            "32 per transaction by `JobStore.settle` (bastion's own statements) and, for "
            "comparison only, by one fenced UPDATE sent once per transaction with many "
            "parameter sets (executemany: not bastion's code).",
            "",
            "| backend | queued | ms per claim of 16 | one claimer's ceiling, jobs/s | "
            "settle µs/job | executemany µs/job | plan |",
            "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for p in claims:
            lines.append(
                f"| {p['backend']} | {p['queued']:,} | {p['median_ms']:.1f} | "
                f"{16 / (p['median_ms'] / 1000):,.0f} | {p['settle_us_per_job']:.0f} | "
                f"{p['executemany_us_per_job']:.0f} | {'; '.join(p['plan'])} |"
            )
    for p in profiles:
        if p["mode"] != "yappi" or not p.get("profile"):
            continue
        profile = p["profile"]
        lines += [
            "",
            f"### yappi: `{p['label']}` ({p['jobs']} jobs, {p['jobs_per_s']:,.0f} jobs/s while "
            f"profiled, {profile['cpu_seconds']} CPU s)",
            "",
            "CPU clock, every thread, C functions included. Shares are of all profiled CPU "
            "time; the profiler slows the run several times and inflates code that makes "
            "many small calls.",
            "",
            "Top self time:",
            "",
            "| share | calls/job | function | where |",
            "| ---: | ---: | --- | --- |",
        ]
        lines += [
            f"| {row['share']:.1%} | {row['calls'] / p['jobs']:.2f} | `{row['function']}` | "
            f"`{row['where']}` |"
            for row in profile["self"][:20]
        ]
        lines += [
            "",
            "Top inclusive time:",
            "",
            "| share | calls/job | function | where |",
            "| ---: | ---: | --- | --- |",
        ]
        lines += [
            f"| {row['share']:.1%} | {row['calls'] / p['jobs']:.2f} | `{row['function']}` | "
            f"`{row['where']}` |"
            for row in profile["inclusive"][:30]
        ]
    return lines


def _options(method: dict[str, Any]) -> str:
    """The command-line options a run departed from the defaults with."""
    if method["quick"]:
        return " --quick"
    options = ""
    if method["jobs"] != 5000:
        options += f" --jobs {method['jobs']}"
    if method["reps"] != 3:
        options += f" --reps {method['reps']}"
    if method["workers"] != [1, 2]:
        options += f" --workers {','.join(str(w) for w in method['workers'])}"
    if method["concurrency"] != 16:
        options += f" --concurrency {method['concurrency']}"
    return options


def _verdict(result: dict[str, Any]) -> list[str]:
    """The acceptance targets in three lines, for the top of the file."""
    lines = []
    for ratio in result["ratios"]:
        if ratio["target"] is not None:
            lines.append(
                f"- {ratio['ratio']}, {ratio['workers']} worker process(es): "
                f"**{ratio['value']:.2f}** (target ≥ {ratio['target']:.0f}: "
                f"{'met' if ratio['met'] else 'MISSED'})"
            )
    for workers, row in result["summary"].get("bastion_sqlite", {}).items():
        met = row["jobs_per_s"] >= SQLITE_TARGET
        lines.append(
            f"- bastion_sqlite, {workers} worker process(es): **{row['jobs_per_s']:,.0f} "
            f"jobs/s** (target ≥ {SQLITE_TARGET:,.0f}: {'met' if met else 'MISSED'})"
        )
    return ["Acceptance, medians of this run:", "", *lines, ""] if lines else []


def write_markdown(result: dict[str, Any], path: Path) -> None:
    machine = result["machine"]
    method = result["method"]
    summary = result["summary"]
    workers = method["workers"]
    lines = [
        "# Jobs benchmark: enqueue→complete throughput and enqueue→start latency",
        "",
        f"Measured {result['date']} by `benchmarks/jobs_throughput.py{_options(method)}` "
        "(generated file: rerun the script "
        "rather than editing it). Issue #4's acceptance: bastion on PostgreSQL at least "
        "twice procrastinate's jobs/s and at least Celery's, and at least 2,000 jobs/s on SQLite.",
        "",
        *_verdict(result),
        "## Machine",
        "",
        "| | |",
        "| --- | --- |",
        f"| CPUs (nproc) | {machine['nproc']} |",
        f"| CPU model | {machine['cpu_model']} |",
        f"| platform | {machine['platform']} |",
        f"| Python | {machine['python']} ({machine['python_implementation']}) |",
        f"| SQLite | {machine['sqlite']} |",
        f"| PostgreSQL | {machine['postgresql']} |",
        f"| Redis | {machine['redis']} |",
        f"| git | {machine['git'].get('head', '?')}, "
        f"{machine['git'].get('changed_files_under_src', '?')} uncommitted file(s) under src/; "
        f"bastion imported from a {method.get('source', '?')} (fingerprint "
        f"{method.get('code', '?')}) |",
        f"| load average (1 min) | {method['loadavg_start']} at start, "
        f"{method['loadavg_end']} at end |",
        "",
        "Library versions: "
        + ", ".join(f"{name} {version}" for name, version in machine["versions"].items() if version)
        + ".",
        "",
        "## Method",
        "",
        f"- {method['jobs']:,} no-op jobs per run, {method['reps']} repetition(s), "
        f"{' and '.join(str(w) for w in workers)} worker process(es); the order of the "
        "systems rotates every repetition. Medians over repetitions.",
        f"- Every worker process runs {method['concurrency']} jobs at once: `bastion worker "
        f"--concurrency {method['concurrency']}` (claims at most `[jobs] batch_size` = 32 and "
        f"at most the free slots per round trip), `celery worker --pool threads --concurrency "
        f"{method['concurrency']}` (one process, prefetch multiplier 4, acks_late, no result "
        f"backend, gossip/mingle/heartbeat off), `procrastinate worker --concurrency "
        f"{method['concurrency']}` (log level warning; its default logs a line per job).",
        "- bastion workers run with production settings (JSON logs at INFO to a file: no "
        "line per job at that level) and every other setting at its default. Jobs: "
        "`benchmarks/jobs/bastion_app.py`, `celery_app.py`, `procrastinate_app.py`.",
        "- A run: fresh store (a new SQLite file in WAL mode; a new PostgreSQL database with "
        "bastion's migrations or procrastinate's schema; Celery's Redis keys deleted), "
        "N jobs enqueued the fastest way each system offers (bastion: `enqueue_many`, one "
        "INSERT in one transaction; procrastinate: `batch_defer`; Celery: `delay()` per "
        "task), then, on PostgreSQL, `ANALYZE` of the job table (autovacuum would have "
        "gathered statistics on a live queue table; without them procrastinate's fetch "
        "plan took about twice as long while this benchmark was written), then the worker "
        "processes are started.",
        f"- Completion is polled from the runner every {POLL_S * 1000:.0f} ms: bastion and "
        "procrastinate count rows with status `succeeded`; for Celery, N minus the queue's "
        "LLEN minus the `unacked` hash (a message leaves it when acked, after its task "
        "returned: acks_late), so the no-op task makes no extra round trip. **jobs/s** is "
        "measured from the first poll that sees a completed job to the poll that sees all "
        "N: worker start-up (imports, connections) is excluded and shown apart.",
        "- Checked after every run: N `succeeded` rows and no other (bastion, "
        "procrastinate); N tasks counted in memory by the Celery workers and reported at "
        "their shutdown.",
        "- CPU per job, over the same window: worker processes' user+system time from /proc "
        "(CPU share: cores' worth of CPU the workers used), and the database server's (every "
        "`postgres` or `redis-server` process, exited backends included: other users of "
        "the server on this shared machine count too).",
        "- Nothing is pinned: on 2 cores the workers, the database server and the runner "
        "share both.",
        "",
        "## Throughput: jobs/s (median)",
        "",
        "| system | "
        + " | ".join(f"{w} worker{'s' if w > 1 else ''}" for w in workers)
        + " | "
        + " | ".join(f"min-max ({w})" for w in workers)
        + " | "
        + " | ".join(f"with start-up ({w})" for w in workers)
        + " | start-up s (1) | worker CPU µs/job (1) | worker CPU share (1) "
        "| server CPU µs/job (1) | checked |",
        "| --- | " + " | ".join("---:" for _ in range(3 * len(workers) + 4)) + " | --- |",
    ]
    for key, by_workers in summary.items():
        first = by_workers.get(str(workers[0]), {})
        lines.append(
            f"| {TARGETS[key]} | "
            + " | ".join(
                f"**{_fmt(by_workers[str(w)]['jobs_per_s'])}**" if str(w) in by_workers else "-"
                for w in workers
            )
            + " | "
            + " | ".join(
                f"{_fmt(by_workers[str(w)]['min'])}-{_fmt(by_workers[str(w)]['max'])}"
                if str(w) in by_workers
                else "-"
                for w in workers
            )
            + " | "
            + " | ".join(
                _fmt(by_workers[str(w)]["jobs_per_s_incl_startup"]) if str(w) in by_workers else "-"
                for w in workers
            )
            + f" | {first.get('startup_s', '-')} | {_fmt(first.get('worker_cpu_us_per_job'))} | "
            f"{_fmt(first.get('worker_cpu_share'), 2)} | "
            f"{_fmt(first.get('server_cpu_us_per_job'))} | "
            f"{'all runs' if all(v['verified'] for v in by_workers.values()) else 'FAILED'} |"
        )
    lines += [
        "",
        "## Against the targets",
        "",
        "| ratio (jobs/s, medians) | workers | value | target | met |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for ratio in result["ratios"]:
        goal = "-" if ratio["target"] is None else f"≥ {ratio['target']:.0f}"
        met = "-" if ratio["met"] is None else ("yes" if ratio["met"] else "**no**")
        lines.append(
            f"| {ratio['ratio']} | {ratio['workers']} | **{ratio['value']:.2f}** | {goal} | {met} |"
        )
    for w in workers:
        sqlite = summary.get("bastion_sqlite", {}).get(str(w))
        if sqlite:
            met = sqlite["jobs_per_s"] >= SQLITE_TARGET
            lines.append(
                f"| bastion_sqlite jobs/s | {w} | **{sqlite['jobs_per_s']:,.0f}** | "
                f"≥ {SQLITE_TARGET:,.0f} | {'yes' if met else '**no**'} |"
            )
    enqueue = result["enqueue"]
    if enqueue:
        lines += [
            "",
            "## Enqueue rate (median, from this process, sequential)",
            "",
            "| system | one job per transaction / call: jobs/s | bulk: jobs/s | bulk method |",
            "| --- | ---: | ---: | --- |",
        ]
        methods = {
            "bastion_sqlite": "`enqueue_many`: one multi-row INSERT, one transaction",
            "bastion_postgres": "`enqueue_many`: one multi-row INSERT, one transaction",
            "celery": "none (one LPUSH per `delay()`)",
            "procrastinate": "`batch_defer`: one call",
        }
        for key, row in enqueue.items():
            lines.append(
                f"| {key} | {_fmt(row['single_per_s'])} ({row['single_jobs']} jobs) | "
                f"{_fmt(row['bulk_per_s'])} | {methods.get(key, '')} |"
            )
    latency = result["latency"]
    if latency:
        lines += [
            "",
            "## Enqueue→start latency, one idle worker",
            "",
            "| system | jobs | p50 ms | p95 ms | p99 ms | max ms | mean ms | pause before each "
            "enqueue, s |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for row in latency:
            lines.append(
                f"| {LATENCY_TARGETS[row['target']]} | {row['count']} | {row['p50_ms']:.1f} | "
                f"{row['p95_ms']:.1f} | {row['p99_ms']:.1f} | {row['max_ms']:.1f} | "
                f"{row['mean_ms']:.1f} | {row['gap_s'][0]:.2f}-{row['gap_s'][1]:.2f} |"
            )
    if result["profiles"] or result["diagnosis"]:
        lines += ["", "## Where the time goes", ""]
        lines += result["diagnosis"]
        if result["diagnosis"]:
            lines.append("")
        lines += _profile_lines(result["profiles"])
    lines += [
        "",
        "## Every throughput run",
        "",
        "| rep | system | workers | jobs/s | with start-up | start-up s | done at first poll "
        "| worker CPU µs/job | worker CPU share | server CPU µs/job | preload jobs/s | check "
        "| load 1m |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- "
        "| ---: |",
    ]
    for run in result["runs"]:
        lines.append(
            f"| {run['rep']} | {run['target']} | {run['workers']} | {run['jobs_per_s']:,.0f} | "
            f"{run['jobs_per_s_incl_startup']:,.0f} | {run['startup_s']} | "
            f"{run['done_at_first_poll']} | {_fmt(run['worker_cpu_us_per_job'])} | "
            f"{_fmt(run['worker_cpu_share'], 2)} | {_fmt(run['server_cpu_us_per_job'])} | "
            f"{run['preload_per_s']:,.0f} | "
            f"{run['check']}{'' if run['verified'] else ' FAILED'} | {run['loadavg_1m_before']} |"
        )
    lines += ["", "## Notes", ""] + [f"- {note}" for note in result["notes"]]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# --- environment ------------------------------------------------------------------------


def machine_info(options: Options) -> dict[str, Any]:
    import psycopg

    from benchmarks.jobs.common import client

    info: dict[str, Any] = rp.machine_info()
    info.pop("wrk", None)
    versions: dict[str, str | None] = {}
    for name in VERSIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    info["versions"] = versions
    with psycopg.connect(options.postgres_url, autocommit=True) as connection:
        row = connection.execute("SHOW server_version").fetchone()
        info["postgresql"] = row[0] if row else "?"
    info["redis"] = client().info("server").get("redis_version", "?")
    return info


def _notes(result: dict[str, Any]) -> list[str]:
    method = result["method"]
    notes = []
    changed = method.get("code_live_start") != method.get("code_live_end")
    if changed and method.get("source", "").startswith("snapshot"):
        notes.append(
            "src/ changed during the run (other engineers commit while it runs): every "
            "process imported bastion from the copy taken at the start (fingerprint "
            f"{method.get('code')}), so the whole run measured one version of the code."
        )
    elif changed:
        notes.append(
            "**bastion's source files changed during this run** (`--live-src`: fingerprint "
            f"{method.get('code_live_start')} at the start, {method.get('code_live_end')} at "
            "the end): processes started after the change ran the new code. Rerun before "
            "trusting these numbers."
        )
    notes += [
        "The machine is shared (2 CPUs; other engineers' test suites may run at the same "
        f"time): the 1-minute load average was {result['method']['loadavg_start']} at the "
        f"start and {result['method']['loadavg_end']} at the end, and is listed before every "
        "run. Systems are interleaved and their order rotates; compare within this run.",
        "With 2 CPUs, 2 worker processes plus the database server oversubscribe the "
        "machine: a second worker helps only a system whose single worker leaves CPU idle "
        "(waiting on the database or the broker).",
        "Celery runs the threads pool so that 'one worker process with 16 jobs at once' "
        "means the same for every system; its default prefork pool would be 16 processes.",
        "The Celery no-op is a plain function; bastion's and procrastinate's are `async def`. "
        "bastion's sync flavour runs a plain `def` on a thread, in a transaction that also "
        "records its completion: one commit per job.",
        "bastion on SQLite across processes has no wake-up signal (the worker polls "
        "every `[jobs] poll_interval_s`, default 1.0 s): the latency rows show the default, "
        "0.05 s, and the worker embedded in the enqueuing process, where a commit wakes it "
        "at once. On PostgreSQL bastion and procrastinate are woken by LISTEN/NOTIFY, Celery "
        "by its blocking BRPOP on the queue.",
        "What limits each (see the worker CPU share column and 'Where the time goes'): "
        "bastion async on PostgreSQL spends most of its time waiting on round trips (a claim "
        "transaction and a settle transaction per 16 jobs, each with a pool pre-ping), its "
        "worker process well under one core, which is why a second process adds so much; "
        "bastion async on SQLite is one Python process near a full core, its claimer and "
        "settler taking turns on the write lock; bastion sync is one transaction and commit "
        "per job, and with the default pool a new connection for many of them. Celery's "
        "threads pool is one process bound by the GIL and kombu's per-message work (Redis "
        "round trips to deliver each message, record it as unacked and, after the task, ack "
        "it). procrastinate fetches one job per round trip (`SELECT ... FROM "
        "procrastinate_fetch_job_v2(...)`) and finishes each in another, and its triggers "
        "write a `procrastinate_events` row per status change; its fetch uses a partial index"
        " in priority order, so its cost does not grow with the backlog, unlike bastion's "
        "claim (below).",
        "Every system keeps its finished jobs (bastion until `[jobs] retention_s`, "
        "procrastinate by default, Celery keeps no results at all here).",
    ]
    summary = result["summary"]
    sqlite = summary.get("bastion_sqlite", {})
    if (
        "1" in sqlite
        and "2" in sqlite
        and sqlite["2"]["jobs_per_s"] < 1.1 * sqlite["1"]["jobs_per_s"]
    ):
        notes.append(
            "bastion on SQLite gains nothing from a second worker process "
            f"({sqlite['1']['jobs_per_s']:,.0f} → {sqlite['2']['jobs_per_s']:,.0f} jobs/s; the "
            f"two together used {sqlite['2']['worker_cpu_share']:.2f} of a core against "
            f"{sqlite['1']['worker_cpu_share']:.2f} for one): every claim and every settle "
            "needs the database's one write lock, so the processes take turns, and waiting "
            "for the lock across processes goes through SQLite's busy handler. On SQLite one "
            "worker process (or the embedded worker) is the configuration to run."
        )
    if any(row["target"] == "bastion_postgres" for row in result["latency"]):
        notes.append(
            "bastion's enqueue→start on PostgreSQL is a chain of round trips: the enqueue's "
            "transaction (pool pre-ping, INSERT, `pg_notify`, COMMIT), the NOTIFY to the "
            "worker's listening connection, then a claim transaction (pre-ping, UPDATE ... "
            "RETURNING, COMMIT) on a thread before the job's task starts."
        )
    return notes


def _find(profiles: list[dict[str, Any]], mode: str, label: str) -> dict[str, Any] | None:
    return next((p for p in profiles if p["mode"] == mode and p["label"] == label), None)


def _yappi_share(profile: dict[str, Any] | None, function: str, column: str) -> float | None:
    if not profile or not profile.get("profile"):
        return None
    rows = [r for r in profile["profile"][column] if r["function"] == function]
    return rows[0]["share"] if rows else None


def _diagnosis(result: dict[str, Any]) -> list[str]:
    """The findings of the profile runs, as sentences with this run's numbers."""
    profiles = result["profiles"]
    lines: list[str] = []
    pg = _find(profiles, "count", "bastion_postgres")
    sq = _find(profiles, "count", "bastion_sqlite")
    claims = {(p["backend"], p["queued"]) for p in profiles if p["mode"] == "claim"}
    claim = {(p["backend"], p["queued"]): p for p in profiles if p["mode"] == "claim"}
    for count in (pg, sq):
        if count is None:
            continue
        jobs = count["jobs"]
        settles = sum(v for k, v in count["statements"].items() if k.startswith("settle"))
        claims_sent = sum(v for k, v in count["statements"].items() if k.startswith("claim"))
        statements = sum(count["statements"].values())
        trips = statements + count["commits"] + count["pings"]
        probe = claim.get((count["backend"], jobs))
        if settles > jobs / 2:
            how = (
                "**Settling is one UPDATE per job** (`JobStore.settle_in` builds and sends a "
                "fenced `UPDATE ... WHERE id = ? AND claim_token = ?` for each outcome)"
            )
        else:
            how = (
                "**Claims and settles are batched** (a claim takes up to the free slots, "
                "plain successes settle in one fenced UPDATE per transaction)"
            )
        lines.append(
            f"- {how}. `{count['label']}` in process, {count['jobs_per_s']:,.0f} jobs/s: "
            f"{claims_sent} claim statements ({count['claimed'] / max(1, count['claims']):.1f} "
            + (
                f"jobs each: at most the free slots of `concurrency` {count['concurrency']}, so "
                f"`batch_size` {count['batch_size']} is never reached) "
                if count["concurrency"] < count["batch_size"]
                else "jobs each) "
            )
            + f"and {settles:,} settle statements in {count['settles']} transactions "
            f"({count['settled'] / max(1, count['settles']):.0f} jobs each); "
            f"{statements:,} statements, {count['commits']} commits and {count['pings']} pool "
            f"pings in all: {trips / jobs:.2f} database calls per job. The claimer was busy "
            f"{count['claim_s'] / count['seconds']:.0%} of the run's wall time and the settler "
            f"{count['settle_s'] / count['seconds']:.0%}."
            + (
                f" Settling alone, measured apart (`--mode claim`): "
                f"{probe['settle_us_per_job']:.0f} µs per job as bastion does it, "
                f"{probe['executemany_us_per_job']:.0f} µs per job with a fenced UPDATE sent "
                "once per transaction with many parameter sets (executemany)."
                if probe
                else ""
            )
        )
    for backend in ("postgresql", "sqlite"):
        sizes = sorted(q for b, q in claims if b == backend)
        if len(sizes) < 2:
            continue
        small, large = claim[(backend, sizes[0])], claim[(backend, sizes[-1])]
        lines.append(
            f"- **A claim sorts the whole backlog** ({backend}): the claim's subquery "
            "filters on `status, queue, run_at <= now, handler IN (...)` and orders by "
            "`priority DESC, run_at, id`, which `ix_bastion_jobs_claim (status, queue, "
            "priority, run_at)` cannot return in that order (mixed directions, no `id`), so "
            "every due row (of the highest priority present) is read and sorted for a LIMIT "
            f"of 16 (plan: {'; '.join(large['plan'])}). "
            f"A claim of 16 took {small['median_ms']:.1f} ms with {sizes[0]:,} jobs queued and "
            f"{large['median_ms']:.1f} ms with {sizes[-1]:,}: one claimer's ceiling falls from "
            f"{16 / (small['median_ms'] / 1000):,.0f} to {16 / (large['median_ms'] / 1000):,.0f} "
            f"jobs/s. The throughput runs start with {sizes[0]:,} queued, so their claims cost "
            "that much at first and less as the queue drains; a deeper backlog (a burst, a "
            "worker outage) slows draining exactly when speed matters. An index in "
            "the claim's order (e.g. `(queue, priority DESC, run_at, id) WHERE status = "
            "'queued'`) would make a claim independent of the backlog."
        )
    sync = _find(profiles, "count", "bastion_postgres_sync")
    pooled = next(
        (
            p
            for p in profiles
            if p["mode"] == "count"
            and p["target"] == "bastion_postgres_sync"
            and p["label"] != "bastion_postgres_sync"
        ),
        None,
    )
    if sync is not None:
        lines.append(
            f"- **Sync jobs on PostgreSQL churn connections**: a plain `def` job holds a "
            f"connection for its transaction, so 16 at once exceed `[database] pool_size` "
            f"{sync['pool_size']} (+ `max_overflow` {sync['max_overflow']}, opened and closed "
            f"on demand): {sync['connects']:,} new connections for {sync['jobs']:,} jobs "
            f"({sync['connects'] / sync['jobs']:.2f} per job), each a new PostgreSQL backend; "
            f"PostgreSQL used {_fmt(sync['server_cpu_us_per_job'])} µs of CPU per job, "
            f"{sync['jobs_per_s']:,.0f} jobs/s."
            + (
                f" With `pool_size` {pooled['pool_size']}: {pooled['connects']} new "
                f"connections, {_fmt(pooled['server_cpu_us_per_job'])} µs of PostgreSQL CPU "
                f"per job, {pooled['jobs_per_s']:,.0f} jobs/s. Besides, every job is one "
                "commit (a WAL flush) of its own; that is the sync flavour's purpose."
                if pooled
                else ""
            )
        )
    sync_sq = _find(profiles, "count", "bastion_sqlite_sync")
    if sync_sq is not None and "BEGIN IMMEDIATE" in sync_sq["statements"]:
        begins = sync_sq["statements"]["BEGIN IMMEDIATE"]
        waited = sync_sq["statement_s"].get("BEGIN IMMEDIATE", 0.0)
        lines.append(
            f"- **Sync jobs on SQLite queue for the write lock**: each job's transaction "
            f"starts with `BEGIN IMMEDIATE`, so the {sync_sq['concurrency']} job threads, the "
            f"claimer and the settler take the one write lock in turn: {begins:,} BEGIN "
            f"IMMEDIATE waited {waited:,.1f} s in all ({waited / begins * 1000:.1f} ms each, "
            f"threads overlapping) over a {sync_sq['seconds']:.1f} s run. Claims shrink to "
            f"{sync_sq['claimed'] / max(1, sync_sq['claims']):.1f} jobs (slots free one at a "
            f"time), and the pool overflows as on PostgreSQL ({sync_sq['connects']:,} new "
            f"connections, each running bastion's four PRAGMAs): "
            f"{sync_sq['jobs_per_s']:,.0f} jobs/s in process."
        )
    for count in (sq, pg):
        if count is None:
            continue
        lines.append(
            f"- **CPU per job in the worker** (`{count['label']}`): "
            f"{count['process_cpu_us_per_job']:.0f} µs, the process using "
            f"{count['process_cpu_share']:.0%} of a core"
            + (
                f" (PostgreSQL {count['server_cpu_us_per_job']:.0f} µs per job more)"
                if count["server_cpu_us_per_job"] is not None
                else ""
            )
            + "."
        )
    for label in ("bastion_sqlite", "bastion_postgres"):
        profiled = _find(profiles, "yappi", label)
        if not profiled or not profiled.get("profile"):
            continue
        wanted = (
            "JobStore.claim",
            "JobStore.settle",
            "Session.execute",
            "Worker._execute",
            "TaskGroup.start_soon",
            "BoundLogger.debug",
            "_UnixSelectorEventLoop._run_once",
        )
        shares = [
            f"`{name}` {share:.0%}"
            for name in wanted
            if (share := _yappi_share(profiled, name, "inclusive")) is not None
        ]
        scrub = [r for r in profiled["profile"]["self"] if r["function"] == "scrub"]
        top = ", ".join(
            f"`{r['function']}` {r['share']:.1%}" for r in profiled["profile"]["self"][:4]
        )
        lines.append(
            f"- **Where the worker's CPU goes** (yappi, `{label}`, inclusive shares of the "
            f"profiled CPU; they overlap): {', '.join(shares)}. Self time is spread thin (top: "
            f"{top}): SQLAlchemy building and compiling the claim and settle statements, "
            "and per job an anyio task (`start_soon`), cancel scopes and a bound logger."
            + (
                f" The worker's per-job `log.debug('job succeeded')` is processed although "
                f"the level is INFO: structlog's processors, scrubbing included (`scrub` ran "
                f"{scrub[0]['calls'] / profiled['jobs']:.0f} times per job), run before the "
                "standard library drops the line (no `filter_by_level` first in the chain): "
                "about 8 µs per call in a separate timeit on this machine."
                if scrub
                else ""
            )
        )
    if pg and pg.get("enqueue", {}).get("jobs"):
        e = pg["enqueue"]
        lines.append(
            f"- **Enqueue on PostgreSQL, one per transaction**: "
            f"{e['seconds'] / e['jobs'] * 1e6:.0f} µs each, from the INSERT, `SELECT "
            f"pg_notify(...)`, the COMMIT and `pool_pre_ping`'s round trip "
            f"({e['pings'] / e['jobs']:.0f} per transaction): four round trips per enqueue."
        )
    return lines


# --- main -------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=5000, help="no-op jobs per throughput run")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--workers", default="1,2", help="worker process counts, e.g. 1,2")
    parser.add_argument("--concurrency", type=int, default=16, help="jobs at once per process")
    parser.add_argument("--latency-jobs", type=int, default=200)
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--latency-targets", default=",".join(LATENCY_TARGETS))
    parser.add_argument("--skip-profile", action="store_true")
    parser.add_argument(
        "--live-src",
        action="store_true",
        help="import bastion from src/ as it is when each process starts (default: a copy "
        "of src/ taken at the start, so that commits made meanwhile do not mix in)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 300 jobs, 1 repetition, 1 worker, 10 latency jobs, no profile",
    )
    parser.add_argument(
        "--from-json",
        type=Path,
        default=None,
        help="only write the markdown again from a results .json (notes and findings too)",
    )
    parser.add_argument("--postgres-url", default=PG_DEFAULT)
    parser.add_argument("--redis-url", default=REDIS_DEFAULT)
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="default: benchmarks/results/, or a new temporary folder with --quick",
    )
    args = parser.parse_args()
    if args.from_json is not None:
        saved = json.loads(args.from_json.read_text())
        saved["notes"] = _notes(saved)
        saved["diagnosis"] = _diagnosis(saved)
        args.from_json.write_text(json.dumps(saved, indent=2) + "\n")
        write_markdown(saved, args.from_json.with_suffix(".md"))
        print(f"wrote {args.from_json.with_suffix('.md')}")
        return 0
    if args.quick:
        args.jobs, args.reps, args.workers, args.latency_jobs = 300, 1, "1", 10
        args.skip_profile = True
        args.latency_targets = "bastion_postgres,bastion_sqlite_poll50ms,celery,procrastinate"
    keys = [k for k in args.targets.split(",") if k]
    latency_keys = [k for k in args.latency_targets.split(",") if k]
    workers = sorted({int(w) for w in args.workers.split(",") if w})
    if any(k not in TARGETS for k in keys) or any(k not in LATENCY_TARGETS for k in latency_keys):
        parser.error(f"targets: {', '.join(TARGETS)}; latency: {', '.join(LATENCY_TARGETS)}")
    if args.redis_url.rstrip("/").endswith("/0"):
        parser.error("use a Redis database of the benchmark's own, not 0")

    sys.path.insert(0, str(ROOT))
    # Read by benchmarks/jobs/*.py when first imported, here and in every child.
    os.environ["BENCH_REDIS_URL"] = args.redis_url
    os.environ["BENCH_CELERY_BROKER"] = args.redis_url
    os.environ["BENCH_PROCRASTINATE_DSN"] = Options(args, Path()).postgres(PROCRASTINATE_DB)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    atexit.register(rp._kill_all)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="bastion-bench-jobs-"))
    options = Options(args, workdir)
    loadavg_start = round(os.getloadavg()[0], 2)
    live = ROOT / "src"
    live_start = code_fingerprint(live)
    enqueue_runs: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    latency: list[dict[str, Any]] = []
    profiles: list[dict[str, Any]] = []
    timeout_s = max(120.0, args.jobs / 50)
    single = min(args.jobs, 1000)

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:6.0f} s] {text}", flush=True)

    try:
        if not args.live_src:
            options.src = snapshot_source(workdir)
        code = code_fingerprint(options.src or live)
        machine = machine_info(options)
        for rep in range(1, args.reps + 1):
            shift = (rep - 1) % len(keys)
            order = keys[shift:] + keys[:shift]
            for key in [k for k in order if k in ENQUEUE_TARGETS]:
                _check_stop()
                row = run_enqueue(key, options, args.jobs, single, rep)
                enqueue_runs.append(row)
                say(
                    f"rep {rep} enqueue {key:<22} single {row['single_per_s']:>8,.0f}/s  "
                    f"bulk {_fmt(row['bulk_per_s']):>8}/s"
                )
            for key in order:
                for count in workers if rep % 2 else list(reversed(workers)):
                    _check_stop()
                    row = run_throughput(key, options, args.jobs, count, rep, timeout_s)
                    runs.append(row)
                    say(
                        f"rep {rep} {key:<22} workers {count}  {row['jobs_per_s']:>8,.0f} "
                        f"jobs/s  (with start-up {row['jobs_per_s_incl_startup']:,.0f}; "
                        f"worker CPU {row['worker_cpu_us_per_job']:.0f} µs/job; "
                        f"{row['check']}{'' if row['verified'] else ' FAILED'})"
                    )
        for key in latency_keys:
            row = run_latency(key, options, args.latency_jobs)
            latency.append(row)
            say(
                f"latency {key:<26} p50 {row['p50_ms']:.1f} ms  p95 {row['p95_ms']:.1f} ms  "
                f"p99 {row['p99_ms']:.1f} ms"
            )
        if not args.skip_profile:
            for key in [k for k in keys if k.startswith("bastion_")]:
                profiles.append(run_profile(key, options, args.jobs, "count"))
                say(f"profile (count) {key}: {profiles[-1]['jobs_per_s']:,.0f} jobs/s")
            if "bastion_postgres_sync" in keys:
                # The sync flavour holds a connection per running job: the same run with a
                # pool as large as the concurrency plus the worker's own transactions.
                pool = args.concurrency + 8
                profiles.append(
                    run_profile("bastion_postgres_sync", options, args.jobs, "count", pool)
                )
                say(f"profile (count, pool {pool}): {profiles[-1]['jobs_per_s']:,.0f} jobs/s")
            for key in ("bastion_postgres", "bastion_sqlite"):
                for queued in (args.jobs, args.jobs * 10):
                    profiles.append(run_profile(key, options, queued, "claim"))
                    say(
                        f"profile (claim) {key}, {queued} queued: "
                        f"{profiles[-1]['median_ms']} ms per claim of 16"
                    )
            for key in [k for k in ("bastion_postgres", "bastion_sqlite") if k in keys]:
                profiles.append(run_profile(key, options, args.jobs, "yappi"))
                say(f"profile (yappi) {key}: {profiles[-1]['jobs_per_s']:,.0f} jobs/s")
    except KeyboardInterrupt:
        print("interrupted: workers stopped, nothing written", file=sys.stderr)
        return 130
    finally:
        rp._kill_all()
        with contextlib.suppress(Exception):
            _pg_admin(
                options,
                f"DROP DATABASE IF EXISTS {BASTION_DB} WITH (FORCE)",
                f"DROP DATABASE IF EXISTS {PROCRASTINATE_DB} WITH (FORCE)",
            )
        with contextlib.suppress(Exception):
            from benchmarks.jobs.common import client

            keys_left = list(client().scan_iter())
            if keys_left:
                client().delete(*keys_left)
        shutil.rmtree(workdir, ignore_errors=True)

    summary = summarize(runs)
    result: dict[str, Any] = {
        "schema": 1,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine,
        "method": {
            "quick": args.quick,
            "jobs": args.jobs,
            "reps": args.reps,
            "workers": workers,
            "concurrency": args.concurrency,
            "latency_jobs": args.latency_jobs,
            "poll_s": POLL_S,
            "loadavg_start": loadavg_start,
            "loadavg_end": round(os.getloadavg()[0], 2),
            "wall_s": round(time.monotonic() - started, 1),
            "source": "live src/" if args.live_src else "snapshot of src/ taken at the start",
            "code": code,
            "code_live_start": live_start,
            "code_live_end": code_fingerprint(live),
        },
        "targets": {k: TARGETS[k] for k in keys},
        "summary": summary,
        "ratios": ratios(summary),
        "enqueue": summarize_enqueue(enqueue_runs),
        "latency": latency,
        "profiles": profiles,
        "runs": runs,
        "enqueue_runs": enqueue_runs,
    }
    result["notes"] = _notes(result)
    result["diagnosis"] = _diagnosis(result)
    output = args.output or (
        Path(tempfile.mkdtemp(prefix="bench-jobs-quick-")) if args.quick else rp.RESULTS
    )
    output.mkdir(parents=True, exist_ok=True)
    (output / "jobs_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(result, output / "jobs_throughput.md")
    say(f"wrote {output / 'jobs_throughput.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
