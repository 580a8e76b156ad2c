"""Catalog: categories and products (shop-api.md, Catalog)."""

from __future__ import annotations

from typing import Annotated, Any

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
from bastion.db import CursorPagination
from bastion.search import Hit
from bastion.search.base import query_words
from examples.shop import images
from examples.shop.app import app
from examples.shop.models import Category, Product, product_search
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
    # Without a search term every product is equally relevant: relevance falls back to
    # the default order rather than refusing, so `sort=relevance` is always valid and a
    # client can keep it while the user clears the search box.
    "relevance": _POPULAR,
    "-popularity": _POPULAR,
    "price": (SortKey(Product.price_cents, "price_cents"), SortKey(Product.id, "id")),
    "-price": (
        SortKey(Product.price_cents, "price_cents", descending=True),
        SortKey(Product.id, "id"),
    ),
    "name": (SortKey(Product.name, "name"), SortKey(Product.id, "id")),
}


#: A search reads at most this many best matches, whatever the sort: past them a
#: narrower query is more useful than more pages (search engines cap their result
#: window the same way), and every page stays one bounded index query.
MAX_SEARCH_HITS = 1000
#: Typo matches are looked for only when the words themselves match fewer products
#: than this. The rule depends on the query alone, not on the page size or the
#: cursor, so every page of a search sees the same list; and the typo stage, much
#: dearer than word matching (benchmarks/README.md), runs only when it can help.
TYPO_MATCHES_BELOW = 20

app.search_index(product_search)


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
    q: Annotated[str | None, Query(max_length=200)] = None,
    category_id: Annotated[int | None, Query(ge=1)] = None,
    price_min: Annotated[int | None, Query(ge=0)] = None,
    price_max: Annotated[int | None, Query(ge=0)] = None,
    sort: ProductSort = "relevance",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> PageResult[ProductOut]:
    """List products, most popular first, one cursor page at a time.

    With ``q``, only matching products (best first under the default ``relevance``
    sort), at most the best 1,000; typo matches are added when the words match fewer
    than 20 products. A blank ``q`` lists everything.
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
    filters: dict[str, Any] = {
        "sort": sort,
        "category_id": category_id,
        "price_min": price_min,
        "price_max": price_max,
        "admin": admin,
    }
    if q is not None and q.strip():
        filters["q"] = query_words(q)
        index_filters: dict[str, Any] = {} if admin else {"is_active": True}
        if category_id is not None:
            index_filters["category_id"] = category_id
        hits = product_search.search(
            ctx.session, q, limit=MAX_SEARCH_HITS, filters=index_filters, fuzzy=False
        )
        if len(hits) < TYPO_MATCHES_BELOW:
            hits = product_search.search(
                ctx.session, q, limit=MAX_SEARCH_HITS, filters=index_filters
            )
        statement = statement.where(Product.id.in_([hit.key for hit in hits]))
        if sort == "relevance":
            page = _ranked_page(
                ctx, statement, hits, limit, cursor, listing_scope("products", **filters)
            )
            return images.products_out(ctx, page)
    page = paginate_cursor(
        ctx.session,
        statement,
        keys=SORTS[sort],
        limit=limit,
        cursor=cursor,
        codec=ctx.services.cursors,
        scope=listing_scope("products", **filters),
    )
    return images.products_out(ctx, page)


def _ranked_page(
    ctx: Context,
    statement: Select[tuple[Product]],
    hits: list[Hit],
    limit: int,
    cursor: str | None,
    scope: str,
) -> PageResult[Product]:
    # The cursor holds the last row's (rank, id) and the next page starts after that
    # row's place in the current ranking. An offset would repeat or skip rows when a
    # product is added or removed before it between two requests; comparing ranks alone
    # would too on SQLite, where bm25 scores all shift a little with every new row
    # (corpus statistics) while their order does not. Only when the row itself is gone
    # from the results does the rank decide where to resume.
    ranked = sorted(((hit.rank, hit.key) for hit in hits), key=lambda r: (-r[0], r[1]))
    # The price range is not an index filter: it is applied here, before paging.
    eligible = set(ctx.session.scalars(statement.with_only_columns(Product.id)))
    matching = [r for r in ranked if r[1] in eligible]
    if cursor:
        after = ctx.services.cursors.decode(cursor, scope)
        if len(after) != 2 or not all(isinstance(v, int | float) for v in after):
            raise ValidationFailed(errors=[FieldError("cursor", "invalid_cursor")])
        rank, key = after
        place = next((i for i, r in enumerate(matching) if r[1] == key), None)
        if place is not None:
            matching = matching[place + 1 :]
        else:
            matching = [r for r in matching if (-r[0], r[1]) > (-rank, key)]
    page = matching[:limit]
    has_more = len(matching) > limit
    next_cursor = ctx.services.cursors.encode(scope, list(page[-1])) if has_more else None
    rows = {
        p.id: p
        for p in ctx.session.scalars(select(Product).where(Product.id.in_([k for _, k in page])))
    }
    return PageResult(
        [rows[key] for _, key in page],
        CursorPagination(limit=limit, next_cursor=next_cursor, has_more=has_more),
    )


@app.query("/products/{product_id}", tags=["catalog"])
def get_product(ctx: Context, product_id: int) -> ProductOut:
    """One product; an inactive one is visible to admins only."""
    product = ctx.session.get(Product, product_id)
    if product is None or (not product.is_active and not _sees_inactive(ctx)):
        raise NotFound(resource="product")
    return images.product_out(ctx, product)


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
    return images.product_out(ctx, product)


@app.mutation(
    "/products/{product_id}", method="DELETE", permissions=["delete:all"], tags=["catalog"]
)
def delete_product(ctx: Context, product_id: int) -> None:
    """Deactivate a product (admin); it disappears from listings but orders keep it."""
    product = ctx.session.get(Product, product_id)
    if product is None:
        raise NotFound(resource="product")
    product.is_active = False
