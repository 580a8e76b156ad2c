"""The bastion side of the jobs benchmark: an app with no tables of its own.

Run by ``bastion worker benchmarks.jobs.bastion_app:app --concurrency 16`` with
``BASTION_DATABASE_URL`` pointing at the benchmark's database.
"""

from __future__ import annotations

from bastion import App, Context
from benchmarks.jobs.common import record_start

app = App("benchjobs")


@app.job()
async def noop(ctx: Context, n: int) -> None:
    """The async flavour: no transaction; its completion is acked in batches."""


@app.job()
def noop_sync(ctx: Context, n: int) -> None:
    """The sync (transactional) flavour: runs in a transaction that also records its
    completion, so each job is one commit of its own."""


@app.job()
async def stamp(ctx: Context, i: int) -> None:
    """Record when it started, for enqueue→start latency."""
    record_start(i)
