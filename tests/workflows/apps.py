"""A workflow test app: a ledger table that counts each step's effects."""

from __future__ import annotations

import anyio
from sqlalchemy import String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bastion import App, BastionError, Conflict, Context, Retry
from bastion.workflows import WorkflowRun


class Base(DeclarativeBase):
    pass


class Entry(Base):
    __tablename__ = "ledger"

    id: Mapped[int] = mapped_column(primary_key=True)
    order: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(50))


app = App("wftests", metadata=Base.metadata)
app.errors.declare("card_refused", 402, {"en": {"title": "The card was refused."}})

#: Calls per "<kind>:<order>" of action steps (they keep no rows).
CALLS: dict[str, int] = {}
#: Order of compensations, to check they run in reverse.
UNDONE: list[str] = []


def note(ctx: Context, order: str, kind: str) -> None:
    ctx.session.add(Entry(order=order, kind=kind))


def reserve(ctx: Context, order: str) -> int:
    note(ctx, order, "reserve")
    return 7


def release(ctx: Context, output: int) -> None:
    UNDONE.append("release")
    note(ctx, f"released-{output}", "release")


async def charge(ctx: Context, order: str, failures: int) -> dict[str, str]:
    key = f"charge:{order}"
    CALLS[key] = CALLS.get(key, 0) + 1
    if CALLS[key] <= failures:
        raise ConnectionError(f"gateway down (call {CALLS[key]})")
    return {"charge_id": f"ch_{order}", "key": ctx.idempotency_key or ""}


async def refund(ctx: Context, output: dict[str, str]) -> None:
    key = f"refund-failures:{output['charge_id']}"
    if CALLS.get(key, 0) > 0:
        CALLS[key] -= 1
        raise ConnectionError("refunds are down")
    UNDONE.append("refund")
    CALLS[f"refund:{output['charge_id']}"] = CALLS.get(f"refund:{output['charge_id']}", 0) + 1


def record_order(ctx: Context, order: str) -> str:
    note(ctx, order, "order")
    return f"order-{order}"


def refuse(ctx: Context, order: str) -> None:
    note(ctx, order, "refused")  # rolled back with the step
    raise Conflict(detail="out of stock")


async def gate(ctx: Context, path: str) -> None:
    """Blocks until ``path`` exists: lets a test kill a worker between two steps."""
    CALLS["gate"] = CALLS.get("gate", 0) + 1
    while True:
        if await anyio.Path(path).exists():
            return
        await anyio.sleep(0.05)


@app.workflow(step_retry=Retry(max_attempts=3, base_s=0.01, max_delay_s=0.02))
async def checkout(
    wf: WorkflowRun, order: str, charge_failures: int = 0, refuse_order: bool = False
) -> dict[str, object]:
    reserved = await wf.step(reserve, order=order, compensate=release)
    charged = await wf.step(charge, order=order, failures=charge_failures, compensate=refund)
    if refuse_order:
        await wf.step(refuse, order=order)
    recorded = await wf.step(record_order, order=order)
    return {"reserved": reserved, "charge": charged, "order": recorded}


async def refused_card(ctx: Context, order: str) -> None:
    CALLS[f"card:{order}"] = CALLS.get(f"card:{order}", 0) + 1
    raise BastionError("card_refused")


@app.workflow(step_retry=Retry(max_attempts=3, base_s=0.01, max_delay_s=0.02))
async def pay_by_card(wf: WorkflowRun, order: str) -> None:
    await wf.step(reserve, order=order, compensate=release)
    await wf.step(refused_card, order=order)


@app.workflow(recovery_s=1)
async def gated(wf: WorkflowRun, order: str, path: str) -> str:
    await wf.step(reserve, order=order)
    await wf.step(gate, path=path)
    return await wf.step(record_order, order=order)


@app.workflow()
async def napper(wf: WorkflowRun, order: str, seconds: float) -> str:
    await wf.step(reserve, order=order)
    await wf.sleep(seconds)
    return await wf.step(record_order, order=order)


@app.workflow()
async def parent(wf: WorkflowRun, order: str) -> object:
    child_result = await wf.child(checkout, order=f"{order}-child")
    await wf.step(record_order, order=order)
    return child_result


@app.mutation("/orders")
def place_order(ctx: Context, order: str) -> str:
    """Starts the checkout workflow with the order's commit."""
    return checkout.start(ctx, id=f"checkout:{order}", order=order)


@app.action("/orders/inline")
async def place_order_inline(ctx: Context, order: str, refuse_order: bool = False) -> object:
    return await checkout.run(ctx, id=f"inline:{order}", order=order, refuse_order=refuse_order)


@app.query("/ledger/{order}")
def ledger(ctx: Context, order: str) -> dict[str, int]:
    rows = ctx.session.execute(
        select(Entry.kind, func.count()).where(Entry.order == order).group_by(Entry.kind)
    ).all()
    return {kind: count for kind, count in rows}


@app.action("/keyed")
async def keyed(ctx: Context) -> str | None:
    """Echoes the request's Idempotency-Key, as functions see it."""
    return ctx.idempotency_key
