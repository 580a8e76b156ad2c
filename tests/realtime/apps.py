"""A small app with live queries and channels."""

from __future__ import annotations

from sqlalchemy import String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bastion import App, BastionError, Context, NotFound
from bastion.realtime import send


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "rt_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str] = mapped_column(String(50))
    name: Mapped[str] = mapped_column(String(100))
    stock: Mapped[int] = mapped_column(default=0)


class Unrelated(Base):
    __tablename__ = "rt_unrelated"

    id: Mapped[int] = mapped_column(primary_key=True)


app = App("realtimetests", metadata=Base.metadata)
app.use_auth()
app.channel("inbox")
app.channel("news", per_user=False)
app.channel("staff", per_user=False, permissions=["write:all"])


@app.query("/items/{item_id}")
def get_item(ctx: Context, item_id: int) -> dict[str, object]:
    item = ctx.session.get(Item, item_id)
    if item is None:
        raise NotFound(resource="item")
    return {"id": item.id, "name": item.name, "stock": item.stock}


@app.query("/items-count")
def item_count(ctx: Context) -> int:
    return int(ctx.session.scalar(select(func.count()).select_from(Item)) or 0)


@app.query("/items-count/cached", cache="5m")
def cached_item_count(ctx: Context) -> int:
    return int(ctx.session.scalar(select(func.count()).select_from(Item)) or 0)


app.live_query("item", get_item)
app.live_query("item_count", item_count)


@app.mutation("/items", permissions=["write:own"])
def add_item(ctx: Context, name: str, stock: int = 0) -> dict[str, int]:
    item = Item(owner=ctx.user.id if ctx.user else "", name=name, stock=stock)
    ctx.session.add(item)
    ctx.session.flush()
    send(ctx, "inbox", "item_added", {"id": item.id, "name": name}, user_id=ctx.user.id)
    if name == "boom":
        raise BastionError("conflict")  # rolled back: the event must not leave
    return {"id": item.id}


@app.mutation("/items/{item_id}/stock", method="PATCH")
def set_stock(ctx: Context, item_id: int, stock: int) -> None:
    item = ctx.session.get(Item, item_id)
    if item is None:
        raise NotFound(resource="item")
    item.stock = stock


@app.mutation("/items/{item_id}/touch", method="PATCH")
def touch_item(ctx: Context, item_id: int) -> None:
    """Writes the row without changing what the live query returns."""
    item = ctx.session.get(Item, item_id)
    if item is None:
        raise NotFound(resource="item")
    item.name = item.name + ""
    ctx.session.execute(Item.__table__.update().where(Item.id == item_id).values(name=item.name))


@app.mutation("/unrelated")
def add_unrelated(ctx: Context) -> None:
    ctx.session.add(Unrelated())


@app.action("/news")
async def announce(ctx: Context, text: str) -> None:
    send(ctx, "news", "announcement", {"text": text})
