"""A tiny app for platform tests: one table, a function of each kind, some that misbehave."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlalchemy import String, func, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bastion import App, Context, NotFound


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(200), unique=True)


class NoteIn(BaseModel):
    text: str = Field(min_length=1, max_length=200)


class NoteOut(BaseModel):
    id: int
    text: str


class Count(BaseModel):
    notes: int


app = App("notes", metadata=Base.metadata)
router = APIRouter()


@router.get("/plain/ping")
async def plain_ping() -> dict[str, str]:
    return {"pong": "yes"}


@router.get("/plain/whoami")
async def plain_whoami(request: Request) -> dict[str, str | None]:
    return {
        "client": request.client.host if request.client else None,
        "peer": getattr(request.state, "peer", None),
    }


@router.get("/plain/boom")
async def plain_boom() -> dict[str, str]:
    raise RuntimeError("secret internals: password=hunter2")


app.include_router(router)


@app.query("/notes/count", cache_control="public, max-age=5")
def count_notes(ctx: Context) -> Count:
    return Count(notes=ctx.session.scalar(select(func.count()).select_from(Note)) or 0)


@app.query("/notes/{note_id}")
def get_note(ctx: Context, note_id: int) -> NoteOut:
    note = ctx.session.get(Note, note_id)
    if note is None:
        raise NotFound()
    return note  # type: ignore[return-value]


@app.mutation("/notes")
def create_note(ctx: Context, body: NoteIn) -> NoteOut:
    note = Note(text=body.text)
    ctx.session.add(note)
    ctx.session.flush()
    return note  # type: ignore[return-value]


@app.query("/sneaky/orm")
def sneaky_orm_write(ctx: Context) -> Count:
    ctx.session.add(Note(text="written by a query"))
    ctx.session.flush()
    return Count(notes=-1)


@app.query("/sneaky/sql")
def sneaky_sql_write(ctx: Context) -> Count:
    ctx.session.execute(text("INSERT INTO notes (text) VALUES ('raw write by a query')"))
    return Count(notes=-1)


@app.mutation("/notes/failing")
def write_then_fail(ctx: Context, body: NoteIn) -> NoteOut:
    ctx.session.add(Note(text=body.text))
    ctx.session.flush()
    raise RuntimeError("failed after writing")


@app.mutation("/notes/bad-result")
def write_then_return_garbage(ctx: Context, body: NoteIn) -> NoteOut:
    ctx.session.add(Note(text=body.text))
    ctx.session.flush()
    return {"id": "not a number"}  # type: ignore[return-value]


@app.action("/slow")
async def slow(ctx: Context, seconds: float = 0.2) -> Count:
    await anyio.sleep(seconds)
    return Count(notes=0)


@app.action("/action/session")
async def action_touching_session(ctx: Context) -> Count:
    ctx.session  # noqa: B018 - the access itself must fail
    return Count(notes=0)


@app.action("/action/count")
async def action_calling_query(ctx: Context) -> Count:
    result: Count = await ctx.services.call(count_notes)
    return result
