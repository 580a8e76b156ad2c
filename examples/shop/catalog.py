"""Catalog: categories and products (shop-api.md, Catalog)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from sqlalchemy import Select, select

from bastion import (
    Context,
    CursorPage,
    FieldError,
    NotFound,
    PageResult,
    SortKey,
    ValidationFailed,
    listing_scope,
    paginate_cursor,
)
from examples.shop.app import app
from examples.shop.models import Category, Product
from examples.shop.schemas import (
    CategoryIn,
    CategoryOut,
    ProductIn,
    ProductOut,
    ProductPatch,
    ProductSort,
)

_POPULAR = (
    SortKey(Product.popularity_score, "popularity_score", descending=True),
    SortKey(Product.name, "name"),
    SortKey(Product.id, "id"),
)
#: Keyset orderings; each ends with the unique id so every row has one place.
SORTS: dict[str, tuple[SortKey, ...]] = {
    # Without a search term (search arrives with #5) relevance is the default order.
    "relevance": _POPULAR,
    "-popularity": _POPULAR,
    "price": (SortKey(Product.price_cents, "price_cents"), SortKey(Product.id, "id")),
    "-price": (
        SortKey(Product.price_cents, "price_cents", descending=True),
        SortKey(Product.id, "id"),
    ),
    "name": (SortKey(Product.name, "name"), SortKey(Product.id, "id")),
}


def _sees_inactive(ctx: Context) -> bool:
    return ctx.user is not None and ctx.user.has("read:all")


# Categories change rarely: cached, and dropped by any commit to the categories table.
# (Product pages wait for cross-process invalidation: with several API processes a
# cached stock level could lag another process's checkout until the TTL.)
@app.query("/categories", tags=["catalog"], cache="5m")
def list_categories(ctx: Context) -> list[CategoryOut]:
    """List every category, by name."""
    return list(ctx.session.scalars(select(Category).order_by(Category.name, Category.id)))


@app.mutation("/categories", permissions=["write:all"], tags=["catalog"])
def create_category(ctx: Context, body: CategoryIn) -> CategoryOut:
    """Create a category (admin)."""
    if ctx.session.scalar(select(Category.id).where(Category.slug == body.slug)) is not None:
        raise ValidationFailed(errors=[FieldError("slug", "slug_taken")])
    category = Category(name=body.name, slug=body.slug)
    ctx.session.add(category)
    ctx.session.flush()
    return category  # type: ignore[return-value]


@app.query("/products", response=CursorPage[ProductOut], tags=["catalog"])
def list_products(
    ctx: Context,
    category_id: Annotated[int | None, Query(ge=1)] = None,
    price_min: Annotated[int | None, Query(ge=0)] = None,
    price_max: Annotated[int | None, Query(ge=0)] = None,
    sort: ProductSort = "relevance",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> PageResult[Product]:
    """List products, most popular first, one cursor page at a time.

    Inactive products are hidden unless the caller may read everything (admin).
    """
    if price_min is not None and price_max is not None and price_min > price_max:
        raise ValidationFailed(
            errors=[FieldError("price_max", "range_inverted", params={"min": price_min})]
        )
    admin = _sees_inactive(ctx)
    statement: Select[tuple[Product]] = select(Product)
    if not admin:
        statement = statement.where(Product.is_active.is_(True))
    if category_id is not None:
        statement = statement.where(Product.category_id == category_id)
    if price_min is not None:
        statement = statement.where(Product.price_cents >= price_min)
    if price_max is not None:
        statement = statement.where(Product.price_cents <= price_max)
    scope = listing_scope(
        "products",
        sort=sort,
        category_id=category_id,
        price_min=price_min,
        price_max=price_max,
        admin=admin,
    )
    return paginate_cursor(
        ctx.session,
        statement,
        keys=SORTS[sort],
        limit=limit,
        cursor=cursor,
        codec=ctx.services.cursors,
        scope=scope,
    )


@app.query("/products/{product_id}", tags=["catalog"])
def get_product(ctx: Context, product_id: int) -> ProductOut:
    """One product; an inactive one is visible to admins only."""
    product = ctx.session.get(Product, product_id)
    if product is None or (not product.is_active and not _sees_inactive(ctx)):
        raise NotFound(resource="product")
    return product  # type: ignore[return-value]


def _check_category(ctx: Context, category_id: int | None) -> None:
    if category_id is not None and ctx.session.get(Category, category_id) is None:
        raise ValidationFailed(errors=[FieldError("category_id", "unknown_category")])


# A per-function limit: a leaked admin token cannot flood the catalog.
@app.mutation("/products", permissions=["write:all"], tags=["catalog"], rate_limit="120/minute")
def create_product(ctx: Context, body: ProductIn) -> ProductOut:
    """Create a product (admin)."""
    _check_category(ctx, body.category_id)
    product = Product(**body.model_dump())
    ctx.session.add(product)
    ctx.session.flush()
    return product  # type: ignore[return-value]


@app.mutation("/products/{product_id}", method="PATCH", permissions=["write:all"], tags=["catalog"])
def update_product(ctx: Context, product_id: int, body: ProductPatch) -> ProductOut:
    """Change some fields of a product (admin)."""
    product = ctx.session.get(Product, product_id)
    if product is None:
        raise NotFound(resource="product")
    changes = body.model_dump(exclude_unset=True)
    for field in (
        "name",
        "price_cents",
        "stock",
        "weight_grams",
        "category_id",
        "is_active",
        "description",
    ):
        if field in changes and changes[field] is None:
            raise ValidationFailed(errors=[FieldError(field, "null_not_allowed")])
    _check_category(ctx, changes.get("category_id"))
    for field, value in changes.items():
        setattr(product, field, value)
    ctx.session.flush()
    return product  # type: ignore[return-value]


@app.mutation(
    "/products/{product_id}", method="DELETE", permissions=["delete:all"], tags=["catalog"]
)
def delete_product(ctx: Context, product_id: int) -> None:
    """Deactivate a product (admin); it disappears from listings but orders keep it."""
    product = ctx.session.get(Product, product_id)
    if product is None:
        raise NotFound(resource="product")
    product.is_active = False
