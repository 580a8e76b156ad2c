"""A traced test app: an order is written by a mutation that starts a workflow, whose
steps write a row and call a peer over HTTP (the peer's URL is set by the test); and the
peer, a service on loopback that records the headers of every call it gets."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import String, delete, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bastion import App, Context, NotFound
from bastion.testing import live_server
from bastion.workflows import WorkflowRun


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "trace_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    order: Mapped[str] = mapped_column(String(100))
    text: Mapped[str] = mapped_column(String(200))


app = App("tracetests", metadata=Base.metadata)

#: Where the ``notify`` step posts; each test points it at its own peer.
PEER: dict[str, str] = {"url": ""}

#: Settings of the tests on this app: spans kept in memory, access log on.
SETTINGS: dict[str, Any] = {
    "tracing": {"exporter": "memory"},
    "log": {"access_log": True},
    "jobs": {"poll_interval_s": 0.05, "lease_s": 3, "shutdown_grace_s": 1},
}


def record(ctx: Context, order: str) -> int:
    note = Note(order=order, text="recorded")
    ctx.session.add(note)
    ctx.session.flush()
    return note.id


def unrecord(ctx: Context, note_id: int) -> None:
    ctx.session.execute(delete(Note).where(Note.id == note_id))


async def notify(ctx: Context, order: str) -> int:
    response = await ctx.services.http.post("peer", f"{PEER['url']}/notify", json={"order": order})
    ctx.log.info("peer notified", order=order)
    status: int = response.status_code
    return status


@app.workflow()
async def fulfil(wf: WorkflowRun, order: str) -> dict[str, Any]:
    note_id = await wf.step(record, order=order, compensate=unrecord)
    status = await wf.step(notify, order=order)
    return {"note": note_id, "peer_status": status}


@app.mutation("/orders")
def place_order(ctx: Context, order: str) -> str:
    """Writes the order and starts its fulfilment with the same commit."""
    ctx.session.add(Note(order=order, text="placed"))
    ctx.log.info("order placed", order=order)
    return fulfil.start(ctx, id=f"fulfil:{order}", order=order)


@app.query("/notes/{order}")
def notes(ctx: Context, order: str) -> list[str]:
    rows = ctx.session.scalars(select(Note.text).where(Note.order == order).order_by(Note.id))
    texts = list(rows)
    if not texts:
        raise NotFound(detail=f"no notes for {order}")
    return texts


@app.action("/boom")
async def boom(ctx: Context) -> None:
    raise RuntimeError("the flux capacitor broke")


class Peer:
    """A service the app calls: records the headers of every request it gets."""

    def __init__(self) -> None:
        self.received: list[dict[str, str]] = []
        self.app = Starlette(routes=[Route("/notify", self.notify, methods=["POST"])])

    async def notify(self, request: Request) -> Response:
        self.received.append(dict(request.headers))
        return JSONResponse({"ok": True})


@contextmanager
def serving_peer() -> Iterator[Peer]:
    """A peer on a free loopback port, with the app's ``notify`` step pointed at it."""
    served = Peer()
    with live_server(served.app) as url:
        PEER["url"] = url
        try:
            yield served
        finally:
            PEER["url"] = ""
