"""The procrastinate side of the jobs benchmark: PostgreSQL, its own schema and database.

Run by ``procrastinate --app benchmarks.jobs.procrastinate_app.app worker
--concurrency 16`` with ``BENCH_PROCRASTINATE_DSN`` set. Its worker is woken by
LISTEN/NOTIFY (and polls every 5 s as a fallback, its default); it fetches one job
per round trip and records each outcome in a statement of its own. Finished jobs
are kept (``delete_jobs`` ``never``, the default), so the runner counts rows with
status ``succeeded``.
"""

from __future__ import annotations

import os

from procrastinate import App, PsycopgConnector

from benchmarks.jobs.common import record_start

DSN = os.environ.get(
    "BENCH_PROCRASTINATE_DSN", "postgresql://postgres@127.0.0.1:5432/bench_jobs_pc"
)

app = App(connector=PsycopgConnector(conninfo=DSN))


@app.task(name="noop")
async def noop(n: int) -> None:
    """The no-op task (async, like bastion's async flavour)."""


@app.task(name="stamp")
async def stamp(i: int) -> None:
    """Record when it started, for enqueue→start latency."""
    record_start(i)
