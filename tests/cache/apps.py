"""A small app with cached queries over two tables."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal

from pydantic import BaseModel
from sqlalchemy import String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bastion import App, Context


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str] = mapped_column(String(50))
    name: Mapped[str] = mapped_column(String(100))


class Other(Base):
    __tablename__ = "others"

    id: Mapped[int] = mapped_column(primary_key=True)


app = App("cachetests", metadata=Base.metadata)
#: Runs of each cached query, to tell a hit from a miss.
RUNS: dict[str, int] = {}


def ran(name: str) -> None:
    RUNS[name] = RUNS.get(name, 0) + 1


@app.query("/items/count", cache="5m")
def item_count(ctx: Context) -> int:
    ran("item_count")
    return int(ctx.session.scalar(select(func.count()).select_from(Item)) or 0)


@app.query("/items/slow-count", cache="5m")
def slow_item_count(ctx: Context) -> int:
    ran("slow_item_count")
    time.sleep(0.2)
    return int(ctx.session.scalar(select(func.count()).select_from(Item)) or 0)


@app.query("/my-items", cache="5m")
def my_items(ctx: Context) -> list[str]:
    ran("my_items")
    owner = ctx.user.id if ctx.user else "nobody"
    return list(ctx.session.scalars(select(Item.name).where(Item.owner == owner).order_by(Item.id)))


class Summary(BaseModel):
    """Types JSON does not keep (tuple, datetime, Decimal): a hit must rebuild them."""

    count: int
    names: tuple[str, ...]
    checked_at: datetime
    total: Decimal


@app.query("/items/summary", cache="5m")
def item_summary(ctx: Context) -> Summary:
    ran("item_summary")
    names = tuple(ctx.session.scalars(select(Item.name).order_by(Item.id)))
    at = datetime(2030, 1, 1, 12, 30, tzinfo=UTC)
    return Summary(count=len(names), names=names, checked_at=at, total=Decimal("1.50"))


@app.mutation("/items")
def add_item(ctx: Context, name: str) -> None:
    ctx.session.add(Item(owner=ctx.user.id if ctx.user else "nobody", name=name))


@app.mutation("/others")
def add_other(ctx: Context) -> None:
    ctx.session.add(Other())
