"""The Celery side of the jobs benchmark: Redis broker, late acks, no result backend.

Run by ``celery -A benchmarks.jobs.celery_app worker --pool threads --concurrency 16``.

- ``task_acks_late=True``: a message is acked after its task returned, so a crash
  mid-task redelivers it (the at-least-once semantics bastion's jobs have).
- ``worker_prefetch_multiplier=4`` (Celery's default): up to 4 times the concurrency
  messages reserved per worker process.
- No result backend (``task_ignore_result``): completion is observed on the broker
  instead: a message leaves the queue list when it is delivered and leaves the
  ``unacked`` hash when it is acked, i.e. after its task returned. The runner counts
  ``N - LLEN(queue) - HLEN(unacked)``, so the no-op task does no extra round trip.
- Every worker process counts the tasks it ran in memory and adds the count to a
  Redis key when it shuts down: the runner checks it equals N.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from celery import Celery
from celery.signals import worker_shutdown

from benchmarks.jobs.common import REDIS_URL, client, record_start

QUEUE = "bench_jobs"
RAN_KEY = "bench:jobs:celery_ran"

app = Celery("benchjobs", broker=os.environ.get("BENCH_CELERY_BROKER", REDIS_URL))
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=int(os.environ.get("BENCH_CELERY_PREFETCH", "4")),
    task_ignore_result=True,
    result_backend=None,
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_log_color=False,
    # The default visibility timeout (1 h) is far above any run; stated for clarity.
    broker_transport_options={"visibility_timeout": 3600},
)

_ran_lock = threading.Lock()
_ran_total = 0


def _count() -> None:
    global _ran_total
    with _ran_lock:
        _ran_total += 1


@app.task(name="noop")
def noop(n: int) -> None:
    """The no-op task."""
    _count()


@app.task(name="stamp")
def stamp(i: int) -> None:
    """Record when it started, for enqueue→start latency."""
    record_start(i)


@worker_shutdown.connect
def _report(**_: Any) -> None:
    with _ran_lock:
        client().incrby(RAN_KEY, _ran_total)
