"""Search benchmark: latency of ``SearchIndex.search`` over 100,000 products (#5).

Run from the repository root::

    .venv/bin/python benchmarks/search_latency.py               # about 3 minutes
    .venv/bin/python benchmarks/search_latency.py --products 10000 --reps 3   # a smoke run

One run, both databases, the same data and the same queries:

1. Generate ``--products`` products with a seeded RNG (brand, adjective, noun, model
   number; a two-sentence description from realistic word lists): identical on every
   machine for a given count.
2. Bulk-load them (SQLite ``executemany`` into a fresh file in WAL mode, PostgreSQL
   ``COPY`` into a fresh database ``bench_search_*``), create the index and fill it
   with ``SearchIndex.rebuild`` in one transaction (timed: the indexing cost).
3. Run the fixed query mix ``--reps`` times (fewer when a database spends more than
   ``--budget`` seconds on it: whole rounds only), each query in its own read transaction
   on a pooled connection, as a request would: ``limit=20``, typo tolerance on.
   Latency is the wall time of that transaction; p50 and p99 are over all calls of a
   kind, the ratio is PostgreSQL's over SQLite's.

Results: ``benchmarks/results/search_latency.md``. The PostgreSQL database is dropped
on the way out.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from bastion.search import SearchIndex

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "search_latency.md"

metadata = MetaData()
products = Table(
    "bench_products",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False),
    Column("category_id", Integer, nullable=False),
    Column("price_cents", Integer, nullable=False),
    Column("is_active", Boolean, nullable=False),
)
index = SearchIndex(
    "bench_product_search",
    products,
    key="id",
    fields={"name": "A", "description": "B"},
    filters=["category_id", "is_active"],
)

BRANDS = [
    "Acme",
    "Northwind",
    "Contoso",
    "Fabrikam",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Stark",
    "Wayne",
    "Tyrell",
    "Soylent",
    "Vandelay",
    "Wonka",
    "Cyberdyne",
    "Aperture",
]
ADJECTIVES = [
    "wireless",
    "compact",
    "portable",
    "ergonomic",
    "waterproof",
    "stainless",
    "rechargeable",
    "foldable",
    "premium",
    "lightweight",
    "heavy-duty",
    "smart",
    "vintage",
    "organic",
    "insulated",
    "adjustable",
    "silent",
    "digital",
    "classic",
]
NOUNS = [
    ("headphones", 1),
    ("earbuds", 1),
    ("speaker", 1),
    ("soundbar", 1),
    ("turntable", 1),
    ("keyboard", 2),
    ("mouse", 2),
    ("monitor", 2),
    ("laptop", 2),
    ("webcam", 2),
    ("coffee maker", 3),
    ("kettle", 3),
    ("blender", 3),
    ("toaster", 3),
    ("espresso machine", 3),
    ("tent", 4),
    ("backpack", 4),
    ("sleeping bag", 4),
    ("headlamp", 4),
    ("water bottle", 4),
    ("yoga mat", 5),
    ("kettlebell", 5),
    ("dumbbell", 5),
    ("jump rope", 5),
    ("treadmill", 5),
    ("desk lamp", 6),
    ("notebook", 6),
    ("fountain pen", 6),
    ("office chair", 6),
    ("stapler", 6),
    ("chef knife", 7),
    ("cast iron pan", 7),
    ("cutting board", 7),
    ("stock pot", 7),
    ("smartphone", 8),
    ("tablet", 8),
    ("smartwatch", 8),
    ("charger", 8),
    ("phone case", 8),
]
COLORS = ["black", "white", "silver", "graphite", "navy", "red", "forest green", "sand", "rose"]
MATERIALS = [
    "aluminium",
    "bamboo",
    "steel",
    "recycled plastic",
    "oak",
    "leather",
    "ceramic",
    "silicone",
    "carbon fibre",
    "canvas",
]
FEATURES = [
    "noise cancelling",
    "fast charging",
    "dishwasher safe",
    "long battery life",
    "two year warranty",
    "quick setup",
    "travel case included",
    "low energy use",
    "tool-free assembly",
    "non-slip base",
    "bluetooth pairing",
    "USB-C",
]

#: (kind, query, filters): exact words, prefixes (search-as-you-type), typos,
#: several words, and a filtered query; every kind has several queries.
QUERIES: list[tuple[str, str, dict[str, Any]]] = [
    ("exact", "headphones", {}),
    ("exact", "kettle", {}),
    ("exact", "Northwind", {}),
    ("exact", "bamboo", {}),
    ("exact", "treadmill", {}),
    ("prefix", "head", {}),
    ("prefix", "wirel", {}),
    ("prefix", "espr", {}),
    ("prefix", "sm", {}),
    ("typo", "hedphones", {}),
    ("typo", "keybord", {}),
    ("typo", "blendr", {}),
    ("typo", "expresso machine", {}),
    ("multi-word", "wireless noise cancelling headphones", {}),
    ("multi-word", "stainless steel kettle", {}),
    ("multi-word", "acme black backpack", {}),
    ("multi-word", "portable bluetooth speaker", {}),
    ("filtered", "black", {"category_id": 2, "is_active": True}),
    ("filtered", "compact", {"category_id": 3, "is_active": True}),
    ("filtered", "lamp", {"category_id": 6, "is_active": True}),
]


def generate(count: int) -> Iterator[tuple[int, str, str, int, int, bool]]:
    """``(id, name, description, category_id, price_cents, is_active)``, deterministic."""
    rng = random.Random(20261129)
    for i in range(1, count + 1):
        noun, category = rng.choice(NOUNS)
        brand, adjective, color = rng.choice(BRANDS), rng.choice(ADJECTIVES), rng.choice(COLORS)
        name = f"{brand} {adjective.capitalize()} {noun.title()} {rng.randrange(100, 999)}"
        description = (
            f"A {adjective} {noun} in {color} {rng.choice(MATERIALS)}. "
            f"{rng.choice(FEATURES).capitalize()}, {rng.choice(FEATURES)}."
        )
        yield i, name, description, category, rng.randrange(199, 250_000), i % 20 != 0


def load_sqlite(engine: Engine, rows: list[tuple[Any, ...]]) -> None:
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO bench_products VALUES (?, ?, ?, ?, ?, ?)", rows)
        index.create(connection)


def load_postgres(engine: Engine, url: str, rows: list[tuple[Any, ...]]) -> None:
    metadata.create_all(engine)
    with engine.begin() as connection:
        index.create(connection)
    with psycopg.connect(url) as raw, raw.cursor() as cursor:
        with cursor.copy(
            "COPY bench_products (id, name, description, category_id, price_cents, is_active) "
            "FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute("ANALYZE bench_products")


def build_index(engine: Engine) -> float:
    start = time.perf_counter()
    with Session(engine) as session, session.begin():
        index.rebuild(session, batch=5000)
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            connection.execute(text("ANALYZE bench_product_search_search"))
    return time.perf_counter() - start


def measure(engine: Engine, reps: int, budget_s: float) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {kind: [] for kind, _, _ in QUERIES}
    for query_text in ("warm", "up"):
        with Session(engine) as session, session.begin():
            index.search(session, query_text)
    deadline = time.perf_counter() + budget_s
    for _ in range(reps):
        # Whole rounds only, so every kind keeps its share of calls.
        if time.perf_counter() > deadline and timings["exact"]:
            break
        for kind, query_text, filters in QUERIES:
            start = time.perf_counter()
            with Session(engine) as session, session.begin():
                hits = index.search(session, query_text, limit=20, filters=filters)
            timings[kind].append((time.perf_counter() - start) * 1000)
            assert hits, f"{query_text!r} found nothing"
    timings["all"] = [t for values in list(timings.values()) for t in values]
    return timings


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    name = f"bench_search_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def machine(engines: dict[str, Engine]) -> list[tuple[str, str]]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    with engines["postgresql"].connect() as connection:
        pg_version = connection.execute(text("SHOW server_version")).scalar_one()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return [
        ("CPUs (nproc)", str(os.cpu_count())),
        ("CPU model", model),
        ("platform", platform.platform()),
        ("Python", platform.python_version()),
        ("SQLite", sqlite3.sqlite_version),
        ("PostgreSQL", str(pg_version)),
        (
            "git",
            f"{commit} (working tree shared with other engineers: uncommitted edits may apply)",
        ),
        ("load average (1 min)", f"{os.getloadavg()[0]:.2f} at the end"),
    ]


def report(
    args: argparse.Namespace,
    built: dict[str, tuple[float, float]],
    timings: dict[str, dict[str, list[float]]],
    machine_rows: list[tuple[str, str]],
) -> str:
    kinds = [*dict.fromkeys(kind for kind, _, _ in QUERIES), "all"]
    lines = [
        f"# Search benchmark: `SearchIndex.search` latency over {args.products:,} products",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `benchmarks/search_latency.py "
        f"--products {args.products} --reps {args.reps}` (generated file: rerun the script "
        "rather than editing it).",
        "",
        "## Loading and indexing",
        "",
        "| | bulk load (s) | index build, `rebuild` (s) |",
        "| --- | ---: | ---: |",
    ]
    for db, (load_s, index_s) in built.items():
        lines.append(f"| {db} | {load_s:.1f} | {index_s:.1f} |")
    lines += [
        "",
        f"## Latency per search (ms), up to {args.reps} rounds of {len(QUERIES)} queries",
        "",
        f"Rounds stop once a database has spent `--budget` ({args.budget:.0f} s) on queries; "
        "`calls` says how many each got. With few calls, p99 is the slowest call.",
        "",
        "| kind | calls SQLite/PG | SQLite p50 | SQLite p99 | PostgreSQL p50 | PostgreSQL p99 "
        "| PG/SQLite p50 | PG/SQLite p99 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind in kinds:
        lite, pg = timings["sqlite"][kind], timings["postgresql"][kind]
        s50, s99 = statistics.median(lite), percentile(lite, 0.99)
        p50, p99 = statistics.median(pg), percentile(pg, 0.99)
        lines.append(
            f"| {kind} | {len(lite)}/{len(pg)} | {s50:.2f} | {s99:.2f} | {p50:.2f} | {p99:.2f} "
            f"| {p50 / s50:.2f} | {p99 / s99:.2f} |"
        )
    lines += ["", "Queries:", ""]
    lines += [
        f"- {kind}: `{q}`" + (f" with filters `{filters}`" if filters else "")
        for kind, q, filters in QUERIES
    ]
    lines += ["", "## Machine", "", "| | |", "| --- | --- |"]
    lines += [f"| {key} | {value} |" for key, value in machine_rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument(
        "--budget", type=float, default=60.0, help="seconds of queries per database (whole rounds)"
    )
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    rows = list(generate(args.products))
    built: dict[str, tuple[float, float]] = {}
    timings: dict[str, dict[str, list[float]]] = {}
    engines: dict[str, Engine] = {}
    with tempfile.TemporaryDirectory() as tmp, postgres_database(args.postgres_url) as pg_url:
        sqlite_engine = create_engine(f"sqlite:///{tmp}/search.db")

        @event.listens_for(sqlite_engine, "connect")
        def _wal(connection: Any, _record: Any) -> None:
            connection.execute("PRAGMA journal_mode=WAL")

        pg_engine = create_engine(make_url(pg_url).set(drivername="postgresql+psycopg"))
        engines = {"sqlite": sqlite_engine, "postgresql": pg_engine}
        try:
            for db, engine in engines.items():
                start = time.perf_counter()
                if db == "sqlite":
                    load_sqlite(engine, rows)
                else:
                    load_postgres(engine, pg_url, rows)
                load_s = time.perf_counter() - start
                index_s = build_index(engine)
                built[db] = (load_s, index_s)
                print(f"{db}: loaded in {load_s:.1f} s, indexed in {index_s:.1f} s", flush=True)
                timings[db] = measure(engine, args.reps, args.budget)
                print(
                    f"{db}: p50 {statistics.median(timings[db]['all']):.2f} ms, "
                    f"p99 {percentile(timings[db]['all'], 0.99):.2f} ms",
                    flush=True,
                )
            machine_rows = machine(engines)
        finally:
            for engine in engines.values():
                engine.dispose()
    args.output.write_text(report(args, built, timings, machine_rows))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
