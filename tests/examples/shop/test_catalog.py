"""The shop catalog against its HTTP contract (shop-api.md, Catalog)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from bastion import Runtime
from bastion.testing import BastionClient
from examples.shop.models import Product
from tests.examples.shop.conftest import ADMIN, USER

API = "/api/v1"


async def _walk(client: BastionClient, query: str, limit: int = 37) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        url = f"{API}/products?limit={limit}{query}" + (f"&cursor={cursor}" if cursor else "")
        response = await client.get(url)
        assert response.status_code == 200, response.text
        page = response.json()
        seen.extend(page["data"])
        assert page["pagination"]["limit"] == limit
        cursor = page["pagination"]["next_cursor"]
        assert page["pagination"]["has_more"] is (cursor is not None)
        if cursor is None:
            return seen
    raise AssertionError("pagination did not end")


def _active_count(runtime: Runtime) -> int:
    with runtime.database.read_transaction() as session:
        return (
            session.scalar(select(func.count()).select_from(Product).where(Product.is_active)) or 0
        )


async def test_first_page_has_five_products_and_a_cursor(client: BastionClient) -> None:
    response = await client.get(f"{API}/products?limit=5")
    assert response.status_code == 200
    body = response.json()
    assert len(body["data"]) == 5
    assert body["pagination"] == {
        "limit": 5,
        "next_cursor": body["pagination"]["next_cursor"],
        "has_more": True,
    }
    assert isinstance(body["pagination"]["next_cursor"], str)
    assert set(body["data"][0]) == {
        "id",
        "name",
        "description",
        "price_cents",
        "stock",
        "weight_grams",
        "category_id",
        "is_active",
        "image_url",
        "popularity_score",
        "created_at",
        "updated_at",
    }
    assert body["data"][0]["created_at"].endswith("Z")


@pytest.mark.parametrize("sort", ["relevance", "-popularity", "price", "-price", "name"])
async def test_cursors_visit_every_active_product_exactly_once(
    client: BastionClient, runtime: Runtime, sort: str
) -> None:
    products = await _walk(client, f"&sort={sort}")
    ids = [p["id"] for p in products]
    assert len(ids) == len(set(ids)) == _active_count(runtime) >= 200
    assert all(p["is_active"] for p in products)
    key = {
        "price": ("price_cents", False),
        "-price": ("price_cents", True),
        "name": ("name", False),
    }.get(sort, ("popularity_score", True))
    values = [p[key[0]] for p in products]
    assert values == sorted(values, reverse=key[1])


async def test_filters_combine_and_paginate(client: BastionClient) -> None:
    products = await _walk(
        client, "&category_id=2&price_min=10000&price_max=90000&sort=price", limit=7
    )
    assert products, "the demo data has products in this range"
    assert all(p["category_id"] == 2 and 10000 <= p["price_cents"] <= 90000 for p in products)


async def test_admin_sees_inactive_products_in_lists_and_by_id(
    client: BastionClient, runtime: Runtime
) -> None:
    with runtime.database.read_transaction() as session:
        hidden = session.scalar(select(Product.id).where(Product.is_active.is_(False)).limit(1))
        total = session.scalar(select(func.count()).select_from(Product))
    assert (await client.get(f"{API}/products/{hidden}")).status_code == 404
    with client.acting_as(ADMIN):
        assert (await client.get(f"{API}/products/{hidden}")).status_code == 200
        assert len(await _walk(client, "", limit=100)) == total


async def test_get_product_sends_etag_and_answers_304(client: BastionClient) -> None:
    first = await client.get(f"{API}/products/1")
    assert first.status_code == 200
    tag = first.headers["etag"]
    again = await client.get(f"{API}/products/1", headers={"If-None-Match": tag})
    assert again.status_code == 304
    assert again.content == b""
    with client.acting_as(ADMIN):
        changed = await client.patch(f"{API}/products/1", json={"price_cents": 4242})
    assert changed.status_code == 200
    after = await client.get(f"{API}/products/1", headers={"If-None-Match": tag})
    assert after.status_code == 200, "a product write is visible to the next read"
    assert after.json()["price_cents"] == 4242


async def test_categories_are_listed(client: BastionClient) -> None:
    response = await client.get(f"{API}/categories")
    assert response.status_code == 200
    assert {"id", "name", "slug"} == set(response.json()[0])
    assert len(response.json()) == 12


NEW_PRODUCT = {
    "name": "Test Widget",
    "price_cents": 1999,
    "stock": 5,
    "weight_grams": 300,
    "category_id": 1,
}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/products", NEW_PRODUCT),
        ("PATCH", "/products/1", {"stock": 1}),
        ("DELETE", "/products/1", None),
        ("POST", "/categories", {"name": "New", "slug": "new"}),
    ],
)
async def test_writes_are_refused_without_permission(
    client: BastionClient, runtime: Runtime, method: str, path: str, body: Any
) -> None:
    before = await client.get(f"{API}/products/1")
    anonymous = await client.request(method, API + path, json=body)
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "not_authenticated"
    with client.acting_as(USER):
        denied = await client.request(method, API + path, json=body)
    assert denied.status_code == 403
    assert denied.json()["code"] == "permission_denied"
    assert (await client.get(f"{API}/products/1")).json() == before.json()


async def test_admin_creates_updates_and_deactivates_a_product(client: BastionClient) -> None:
    with client.acting_as(ADMIN):
        created = await client.post(f"{API}/products", json=NEW_PRODUCT)
        assert created.status_code == 201, created.text
        product = created.json()
        assert product["name"] == "Test Widget"
        assert product["is_active"] is True
        updated = await client.patch(
            f"{API}/products/{product['id']}", json={"stock": 9, "name": "Renamed"}
        )
        assert updated.status_code == 200
        assert (updated.json()["stock"], updated.json()["name"]) == (9, "Renamed")
        deleted = await client.delete(f"{API}/products/{product['id']}")
        assert deleted.status_code == 204
        assert deleted.content == b""
    assert (await client.get(f"{API}/products/{product['id']}")).status_code == 404


async def test_product_writes_validate_their_input(client: BastionClient) -> None:
    with client.acting_as(ADMIN):
        unknown = await client.post(f"{API}/products", json={**NEW_PRODUCT, "category_id": 999})
        negative = await client.post(f"{API}/products", json={**NEW_PRODUCT, "price_cents": -1})
        extra = await client.patch(f"{API}/products/1", json={"colour": "red"})
        null = await client.patch(f"{API}/products/1", json={"name": None})
        missing = await client.patch(f"{API}/products/99999", json={"stock": 1})
        taken = await client.post(f"{API}/categories", json={"name": "Phones 2", "slug": "phones"})
    assert unknown.status_code == 422
    assert unknown.json()["errors"] == [
        {
            "field": "category_id",
            "code": "unknown_category",
            "message": "There is no category with this id.",
        }
    ]
    assert negative.json()["errors"][0]["field"] == "price_cents"
    assert extra.json()["errors"][0] == {
        "field": "colour",
        "code": "extra_forbidden",
        "message": "This field is not allowed.",
    }
    assert null.json()["errors"][0]["code"] == "null_not_allowed"
    assert missing.status_code == 404
    assert taken.json()["errors"][0]["code"] == "slug_taken"


async def test_creating_products_has_its_own_rate_limit(client: BastionClient) -> None:
    category = (await client.get(f"{API}/categories")).json()[0]["id"]
    body = {"name": "Desk lamp", "price_cents": 2500, "category_id": category}
    with client.acting_as(ADMIN):
        response = await client.post(f"{API}/products", json=body)
    assert response.status_code == 201
    # The tightest limit is the function's 120/minute, not the per-user default.
    assert response.headers["ratelimit-limit"] == "120"
    assert response.headers["ratelimit-remaining"] == "119"


async def test_the_cached_category_list_follows_new_categories(
    client: BastionClient, runtime: Runtime
) -> None:
    before = (await client.get("/api/v1/categories")).json()
    assert (await client.get("/api/v1/categories")).json() == before
    hits = runtime.cache.hits
    assert hits >= 1, "the second read was served from the cache"
    with client.acting_as(ADMIN):
        created = await client.post(
            "/api/v1/categories", json={"name": "Zz cached", "slug": "zz-cached"}
        )
    assert created.status_code == 201
    after = (await client.get("/api/v1/categories")).json()
    assert [c["slug"] for c in after] == [c["slug"] for c in before] + ["zz-cached"]
    assert runtime.cache.hits == hits, "the commit dropped the entry: a miss, not a hit"
