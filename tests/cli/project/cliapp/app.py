"""The CLI tests' app: one table, a query, a mutation, a slow action and a router.

It has no revisions yet: ``bastion migrate make`` writes the first one during
the tests, into the test's own copy of this package.
"""

from __future__ import annotations

from pathlib import Path

import anyio
from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import Integer, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bastion import NAMING_CONVENTION, App, Context, NotFound

HERE = Path(__file__).parent


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Item(Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))


class ItemIn(BaseModel):
    name: str


class ItemOut(BaseModel):
    id: int
    name: str


app = App("cliapp", metadata=Base.metadata, migrations=HERE / "migrations")


@app.query("/items/{item_id}")
def get_item(ctx: Context, item_id: int) -> ItemOut:
    item = ctx.session.get(Item, item_id)
    if item is None:
        raise NotFound()
    return ItemOut(id=item.id, name=item.name)


@app.mutation("/items", permissions=["write:all"])
def create_item(ctx: Context, body: ItemIn) -> ItemOut:
    item = Item(name=body.name)
    ctx.session.add(item)
    ctx.session.flush()
    return ItemOut(id=item.id, name=item.name)


@app.action("/slow")
async def slow(ctx: Context) -> dict[str, str]:
    """Take a second, so a test can stop the server while this request is in flight."""
    # The test waits for this line before it sends SIGTERM.
    ctx.log.info("slow_started")
    await anyio.sleep(1.0)
    return {"status": "done"}


router = APIRouter()


@router.get("/plain/ping")
async def ping() -> dict[str, str]:
    return {"pong": "yes"}


app.include_router(router)
