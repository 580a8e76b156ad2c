"""Peer (c): a raw Starlette route over the bare sqlite3 driver, the practical limit.

No ORM, no validation, no thread hop, no middleware: one prepared-statement lookup
on a connection opened at start-up and ``json.dumps`` of the row. It answers with
the same JSON as every other target (checked by benchmarks/request_path.py before
measuring). Served as ``uvicorn --factory benchmarks.peers.starlette_raw:create``.
"""

from __future__ import annotations

import json
import os
import sqlite3

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from benchmarks.catalog import COLUMNS

_SELECT = f"SELECT {', '.join(COLUMNS)} FROM products WHERE id = ?"
_IS_ACTIVE = COLUMNS.index("is_active")
_CREATED_AT = COLUMNS.index("created_at")


def create(path: str | None = None) -> Starlette:
    """The app; ``path`` defaults to ``$BENCH_DB``."""
    # One connection, used only from the event loop thread: a primary-key lookup in
    # a local file takes microseconds, less than a hop to a worker thread would.
    connection = sqlite3.connect(path or os.environ["BENCH_DB"], check_same_thread=False)

    async def get_product(request: Request) -> Response:
        row = connection.execute(_SELECT, (request.path_params["product_id"],)).fetchone()
        if row is None:
            return JSONResponse({"detail": "product not found"}, status_code=404)
        body = dict(zip(COLUMNS, row, strict=True))
        # SQLite stores booleans as 0/1 and SQLAlchemy's DateTime as "YYYY-MM-DD HH:MM:SS.ffffff";
        # render both as the Pydantic-built targets do.
        body["is_active"] = bool(row[_IS_ACTIVE])
        body["created_at"] = row[_CREATED_AT].replace(" ", "T", 1)
        return Response(
            json.dumps(body, separators=(",", ":"), ensure_ascii=False),
            media_type="application/json",
        )

    return Starlette(routes=[Route("/api/v1/products/{product_id:int}", get_product)])
