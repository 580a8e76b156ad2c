"""The app realtime_fanout.py serves: a public channel and a live query over a small table.

Served as ``python -m bastion.cli run`` with ``BASTION_APP=benchmarks.apps.realtime_app:app``;
everything else comes from the environment the runner sets. Clients are anonymous: the
channel and the query need no permission, as a public news feed or a product page.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bastion import App, Context, NotFound
from bastion.realtime import send

#: Rows in the table; the live query reads one of them.
ROWS = 10
WATCHED_ID = 1


class Base(DeclarativeBase):
    pass


class Counter(Base):
    __tablename__ = "rt_bench_counters"

    id: Mapped[int] = mapped_column(primary_key=True)
    value: Mapped[int] = mapped_column(default=0)


app = App("rtbench", metadata=Base.metadata)
app.channel("news", per_user=False)


@app.query("/counters/{counter_id}")
def get_counter(ctx: Context, counter_id: int) -> dict[str, int]:
    counter = ctx.session.get(Counter, counter_id)
    if counter is None:
        raise NotFound(resource="counter")
    return {"id": counter.id, "value": counter.value}


app.live_query("counter", get_counter)


@app.action("/news")
async def announce(ctx: Context, seq: int) -> None:
    """An event at once (no transaction): what (a), (c) and (d) measure."""
    send(ctx, "news", "announcement", {"seq": seq})


@app.mutation("/counters/{counter_id}")
def set_counter(ctx: Context, counter_id: int, value: int) -> None:
    """Commit a new value: every subscriber of the counter gets the re-run's result."""
    changed = ctx.session.execute(
        update(Counter).where(Counter.id == counter_id).values(value=value)
    )
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        raise NotFound(resource="counter")
