"""The product catalogue every benchmark target serves: one table, one JSON shape, one seed.

bastion and the peers import the same mapped class and output model, so a
difference in the numbers comes from the request path, not from the data or the
mapping. The seed is deterministic: the same ``products`` count gives the same
file, byte for byte in content, on every machine.
"""

from __future__ import annotations

import random
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Boolean, DateTime, Float, Integer, String, Text, create_engine, insert
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Products in the default seed; the load generator draws ids from 1..PRODUCTS.
PRODUCTS = 10_000

#: The columns, in the order the raw-driver peer selects and serializes them.
COLUMNS = (
    "id",
    "name",
    "description",
    "price_cents",
    "stock",
    "weight_grams",
    "category_id",
    "is_active",
    "popularity_score",
    "created_at",
)

_WORDS = (
    "alpine",
    "amber",
    "anchor",
    "aurora",
    "basalt",
    "beacon",
    "birch",
    "canyon",
    "cedar",
    "cobalt",
    "copper",
    "coral",
    "delta",
    "ember",
    "fjord",
    "flint",
    "glacier",
    "granite",
    "harbor",
    "heron",
    "indigo",
    "juniper",
    "lagoon",
    "linen",
    "maple",
    "meadow",
    "mesa",
    "nickel",
    "oak",
    "onyx",
    "orchid",
    "pebble",
    "pine",
    "quartz",
    "raven",
    "ridge",
    "saffron",
    "sierra",
    "slate",
    "spruce",
    "summit",
    "tundra",
    "umber",
    "walnut",
    "willow",
    "zephyr",
)
_NOUNS = (
    "backpack",
    "bottle",
    "jacket",
    "kettle",
    "lantern",
    "mug",
    "notebook",
    "scarf",
    "stool",
    "tent",
    "torch",
    "wallet",
)
# A fixed epoch, not "now": created_at must not depend on the day the seed runs.
_EPOCH = datetime(2024, 1, 1, 8, 0, 0)


class Base(DeclarativeBase):
    pass


class Product(Base):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text)
    price_cents: Mapped[int] = mapped_column(Integer)
    stock: Mapped[int] = mapped_column(Integer)
    weight_grams: Mapped[int] = mapped_column(Integer)
    category_id: Mapped[int] = mapped_column(Integer, index=True)
    is_active: Mapped[bool] = mapped_column(Boolean)
    popularity_score: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class ProductOut(BaseModel):
    """The response body of ``GET /api/v1/products/{id}`` for every target."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str
    price_cents: int
    stock: int
    weight_grams: int
    category_id: int
    is_active: bool
    popularity_score: float
    created_at: datetime


def product_rows(products: int = PRODUCTS, *, seed: int = 20240601) -> list[dict[str, object]]:
    """The seed rows; deterministic for a given ``products`` and ``seed``."""
    rng = random.Random(seed)
    rows: list[dict[str, object]] = []
    for number in range(1, products + 1):
        words = rng.sample(_WORDS, 2)
        noun = rng.choice(_NOUNS)
        rows.append(
            {
                "id": number,
                "name": f"{words[0].title()} {words[1].title()} {noun.title()}",
                "description": " ".join(rng.choice(_WORDS) for _ in range(rng.randint(18, 30)))
                + ".",
                "price_cents": rng.randint(199, 49_999),
                "stock": rng.randint(0, 500),
                "weight_grams": rng.randint(20, 12_000),
                "category_id": rng.randint(1, 40),
                "is_active": rng.random() < 0.9,
                "popularity_score": round(rng.random() * 100, 3),
                # Non-zero microseconds keep every target's ISO rendering identical
                # (Pydantic drops a zero fraction, the raw driver would not).
                "created_at": _EPOCH
                + timedelta(minutes=number * 7, microseconds=1 + number * 7919 % 999_998),
            }
        )
    return rows


def seed(path: str | Path, products: int = PRODUCTS) -> Path:
    """Create (or replace) the SQLite file at ``path`` in WAL mode with ``products`` rows."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    for leftover in (
        target,
        target.with_name(target.name + "-wal"),
        target.with_name(target.name + "-shm"),
    ):
        leftover.unlink(missing_ok=True)
    # WAL is a property of the file, set once here; every server then opens it in
    # WAL mode whatever its own connection settings are.
    with sqlite3.connect(target) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
    engine = create_engine(f"sqlite:///{target}")
    try:
        Base.metadata.create_all(engine)
        with engine.begin() as connection:
            connection.execute(insert(Product), product_rows(products))
    finally:
        engine.dispose()
    with sqlite3.connect(target) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return target
