"""An app for metrics tests: routes that answer 200, 404, 422 and 500, a rate-limited
function, a cached query, a job that succeeds and one that dies, and a workflow."""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter

from bastion import App, Context, NotFound
from bastion.jobs import Job, Retry, RetryLater

app = App("metered")
router = APIRouter()


@router.get("/pid")
async def pid() -> int:
    """Which server process answered (multiprocess tests)."""
    return os.getpid()


app.include_router(router)


@app.query("/items/{item_id}")
def get_item(ctx: Context, item_id: int) -> dict[str, int]:
    if item_id > 100:
        raise NotFound()
    return {"id": item_id}


@app.query("/boom")
def boom(ctx: Context) -> dict[str, str]:
    raise RuntimeError("broken on purpose")


@app.query("/scarce", rate_limit="2/minute")
def scarce(ctx: Context) -> dict[str, bool]:
    return {"ok": True}


@app.query("/cached", cache="5m")
def cached(ctx: Context) -> dict[str, bool]:
    return {"ok": True}


@app.job(queue="work")
async def fine(ctx: Context) -> str:
    return "done"


@app.job(queue="work", retry=Retry(max_attempts=1))
async def doomed(ctx: Context) -> None:
    raise RuntimeError("never works")


#: Attempts so far per job name, so a job can fail (or defer) only its first time.
ATTEMPTS: dict[str, int] = {}


def _first_attempt(name: str) -> bool:
    ATTEMPTS[name] = ATTEMPTS.get(name, 0) + 1
    return ATTEMPTS[name] == 1


@app.job(queue="work", retry=Retry(max_attempts=2, base_s=0.01, max_delay_s=0.01))
async def flaky(ctx: Context) -> str:
    if _first_attempt("flaky"):
        raise RuntimeError("the first attempt fails")
    return "done"


@app.job(queue="work")
async def patient(ctx: Context) -> str:
    if _first_attempt("patient"):
        raise RetryLater(0.01)
    return "done"


@app.mutation("/jobs")
def enqueue_jobs(ctx: Context) -> dict[str, int]:
    jobs: dict[str, Job[Any]] = {"fine": fine, "doomed": doomed, "flaky": flaky, "patient": patient}
    return {name: job.enqueue(ctx) for name, job in jobs.items()}


async def reserve(ctx: Context, amount: int) -> dict[str, int]:
    return {"reserved": amount}


@app.workflow()
async def order(wf: Any, amount: int) -> dict[str, Any]:
    return await wf.step(reserve, amount=amount)  # type: ignore[no-any-return]


@app.action("/order")
async def place_order(ctx: Context) -> dict[str, Any]:
    return await order.run(ctx, amount=3)  # type: ignore[no-any-return]


async def wobbly(ctx: Context) -> str:
    if _first_attempt("wobbly"):
        raise RuntimeError("the first attempt fails")
    return "reserved"


def release(ctx: Context, output: str) -> None:
    """Undoes ``wobbly`` (nothing to undo here)."""


async def broken(ctx: Context) -> None:
    raise RuntimeError("fails for good")


QUICK = Retry(max_attempts=2, base_s=0.01, max_delay_s=0.01)


@app.workflow()
async def doomed_order(wf: Any) -> None:
    await wf.step(wobbly, compensate=release, retry=QUICK)
    await wf.step(broken, retry=Retry(max_attempts=1))


@app.action("/doomed-order")
async def place_doomed_order(ctx: Context) -> None:
    await doomed_order.run(ctx)


@app.action("/call-peer")
async def call_peer(ctx: Context, url: str) -> dict[str, bool]:
    await ctx.services.http.request("peer", "GET", url)
    return {"ok": True}
