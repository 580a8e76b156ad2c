"""The shop's request and response bodies (shop-api.md, Catalog)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Name = Annotated[str, Field(min_length=1, max_length=200)]
Cents = Annotated[int, Field(ge=0, le=100_000_000)]
Count = Annotated[int, Field(ge=0, le=1_000_000)]
ProductSort = Literal["relevance", "price", "-price", "name", "-popularity"]


class CategoryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=100)]
    slug: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")]


class CategoryOut(BaseModel):
    id: int
    name: str
    slug: str


class ProductIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    description: Annotated[str, Field(max_length=5000)] = ""
    price_cents: Cents
    stock: Count = 0
    weight_grams: Count = 0
    category_id: int
    is_active: bool = True


class ProductPatch(BaseModel):
    """Only the fields present are changed."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: Annotated[str, Field(max_length=5000)] | None = None
    price_cents: Cents | None = None
    stock: Count | None = None
    weight_grams: Count | None = None
    category_id: int | None = None
    is_active: bool | None = None


class ProductOut(BaseModel):
    id: int
    name: str
    description: str
    price_cents: int
    stock: int
    weight_grams: int
    category_id: int
    is_active: bool
    image_url: str | None
    popularity_score: int
    created_at: datetime
    updated_at: datetime
