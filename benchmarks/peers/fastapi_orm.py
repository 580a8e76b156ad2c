"""Peer (a): plain FastAPI + SQLAlchemy ORM, written the way FastAPI's SQL tutorial does it.

A sync ``def`` endpoint, a session per request from a ``yield`` dependency,
``session.get`` and ``response_model``; no logging, metrics or auth. Served as
``uvicorn --factory benchmarks.peers.fastapi_orm:create`` with ``BENCH_DB`` set
to the SQLite file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

from benchmarks.catalog import Product, ProductOut

# Module level, as in FastAPI's SQL tutorial: FastAPI resolves the string
# annotations of endpoints (``from __future__ import annotations``) against module
# globals, so a dependency defined inside the factory would not be found.
_sessions: sessionmaker[Session] | None = None


def open_database(path: str) -> None:
    """Point every request's session at the SQLite file ``path``."""
    global _sessions
    # check_same_thread=False because FastAPI runs sync endpoints and dependencies
    # on its thread pool, so a pooled connection moves between threads.
    engine = create_engine(f"sqlite:///{path}", connect_args={"check_same_thread": False})
    _sessions = sessionmaker(engine, expire_on_commit=False)


def get_session() -> Iterator[Session]:
    """One session per request, closed (and its connection returned) after the response."""
    if _sessions is None:
        raise RuntimeError("call open_database() first")
    with _sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def create(path: str | None = None) -> FastAPI:
    """The app; ``path`` defaults to ``$BENCH_DB``."""
    open_database(path or os.environ["BENCH_DB"])
    api = FastAPI(title="peer (a): FastAPI + SQLAlchemy ORM")

    @api.get("/api/v1/products/{product_id}", response_model=ProductOut)
    def get_product(product_id: int, session: SessionDep) -> Product:
        product = session.get(Product, product_id)
        if product is None:
            raise HTTPException(status_code=404, detail="product not found")
        return product

    return api
