"""A small app for job tests: one effects table, jobs that succeed, fail, stall and sleep."""

from __future__ import annotations

import time
from datetime import datetime

import anyio
from sqlalchemy import Float, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bastion import App, Context, Retry, RetryLater


class Base(DeclarativeBase):
    pass


class Effect(Base):
    """One row per job effect; the unique key makes a repeated effect an error."""

    __tablename__ = "effects"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    started: Mapped[float | None] = mapped_column(Float)
    ended: Mapped[float | None] = mapped_column(Float)


class Permanent(Exception):
    """No retry can help."""


app = App("jobtests", metadata=Base.metadata)
app.queue("limited", concurrency=2)
app.queue("metered", rate="5/second")

#: Attempts seen per key, for async jobs that keep no rows.
CALLS: dict[str, int] = {}
#: What ``gated`` runs wait for (set by the test that uses it).
GATES: dict[str, anyio.Event] = {}


@app.job()
def record(ctx: Context, key: str) -> dict[str, str]:
    """Insert one effect row; the job's completion commits with it."""
    ctx.session.add(Effect(key=key))
    return {"recorded": key}


@app.job(retry=Retry(max_attempts=3, base_s=0.01, max_delay_s=0.02))
async def flaky(ctx: Context, key: str, failures: int) -> int:
    assert ctx.job is not None
    CALLS[key] = CALLS.get(key, 0) + 1
    if ctx.job.attempt <= failures:
        raise ConnectionError(f"attempt {ctx.job.attempt} failed")
    return ctx.job.attempt


@app.job(retry=Retry(max_attempts=5, base_s=0.01, give_up_on=(Permanent,)))
async def hopeless(ctx: Context, key: str) -> None:
    CALLS[key] = CALLS.get(key, 0) + 1
    raise Permanent("the card number does not exist")


@app.job()
async def later(ctx: Context, key: str) -> int:
    CALLS[key] = CALLS.get(key, 0) + 1
    if CALLS[key] < 3:
        raise RetryLater(0.01)
    assert ctx.job is not None
    return ctx.job.attempt


@app.job(timeout=0.2, max_attempts=1)
async def sleepy(ctx: Context, seconds: float) -> str:
    await anyio.sleep(seconds)
    return "woke"


@app.job(timeout=0.1, max_attempts=1)
def slow_write(ctx: Context, key: str, seconds: float) -> None:
    ctx.session.add(Effect(key=key))
    time.sleep(seconds)


@app.job()
async def progressing(ctx: Context, key: str, steps: int) -> str:
    assert ctx.job is not None
    for step in range(steps):
        ctx.job.progress({"done": step + 1, "of": steps})
        await anyio.sleep(0.05)
    return "done"


@app.job(queue="limited")
async def hold(ctx: Context, key: str, seconds: float) -> None:
    started = time.time()
    await anyio.sleep(seconds)
    await ctx.services.call(mark, key=key, started=started, ended=time.time())


@app.job(queue="metered")
async def metered(ctx: Context, key: str) -> None:
    now = time.time()
    await ctx.services.call(mark, key=key, started=now, ended=now)


@app.job(name="greet", version=1)
def greet_v1(ctx: Context, name: str) -> str:
    return f"hello {name}"


@app.job(name="greet", version=2)
def greet_v2(ctx: Context, first: str, last: str) -> str:
    return f"hello {first} {last}"


@app.job(queue="when")
def stamp(ctx: Context, key: str, at: datetime) -> str:
    ctx.session.add(Effect(key=key))
    return at.isoformat()


@app.mutation("/effects")
def add_effect(ctx: Context, key: str, fail: bool = False) -> int:
    """Enqueue ``record`` in this mutation's transaction; ``fail`` rolls both back."""
    job_id = record.enqueue(ctx, key=key)
    if fail:
        raise RuntimeError("rolled back after enqueueing")
    return job_id


@app.mutation("/marks")
def mark(ctx: Context, key: str, started: float, ended: float) -> None:
    ctx.session.add(Effect(key=key, started=started, ended=ended))


@app.query("/effects")
def effects(ctx: Context) -> list[str]:
    return list(ctx.session.scalars(select(Effect.key).order_by(Effect.id)))


@app.query("/sneaky-enqueue")
def sneaky_enqueue(ctx: Context) -> int:
    return record.enqueue(ctx, key="from-a-query")


@app.job(max_attempts=3)
async def gated(ctx: Context, key: str) -> int:
    CALLS[key] = CALLS.get(key, 0) + 1
    await GATES[key].wait()
    return CALLS[key]
