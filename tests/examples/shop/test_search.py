"""Product search, ``GET /products?q=`` (shop-api.md, Catalog), over the seeded demo data."""

from __future__ import annotations

from typing import Any

import pytest

from bastion.testing import BastionClient
from tests.examples.shop.conftest import ADMIN

API = "/api/v1"


async def _page(client: BastionClient, query: str) -> dict[str, Any]:
    response = await client.get(f"{API}/products?{query}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _names(client: BastionClient, query: str) -> list[str]:
    return [p["name"] for p in (await _page(client, query))["data"]]


async def _walk(client: BastionClient, query: str, limit: int) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    cursor = None
    for _ in range(200):
        page = await _page(
            client, f"{query}&limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        )
        seen.extend(page["data"])
        cursor = page["pagination"]["next_cursor"]
        assert page["pagination"]["has_more"] is (cursor is not None)
        if cursor is None:
            return seen
    raise AssertionError("pagination did not end")


async def _create(client: BastionClient, **fields: Any) -> dict[str, Any]:
    body = {"price_cents": 1999, "stock": 5, "weight_grams": 300, "category_id": 1, **fields}
    with client.acting_as(ADMIN):
        response = await client.post(f"{API}/products", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_a_name_match_outranks_a_description_match(client: BastionClient) -> None:
    described = await _create(client, name="Plain Mug", description="Pairs with the Zephyr set.")
    named = await _create(client, name="Zephyr Teapot", description="Cast iron.")
    found = (await _page(client, "q=zephyr"))["data"]
    assert [p["id"] for p in found] == [named["id"], described["id"]]


@pytest.mark.parametrize(("query", "noun"), [("iphon", "iPhone"), ("hedphones", "Headphones")])
async def test_prefixes_and_typos_find_products(
    client: BastionClient, query: str, noun: str
) -> None:
    names = await _names(client, f"q={query}")
    assert names, f"{query!r} found nothing"
    # Every seeded product with that noun in its name, and nothing before them.
    leading = [name for name in names if noun in name]
    assert names[: len(leading)] == leading
    assert len(leading) >= 3


async def test_typo_matches_only_fill_in_for_scarce_word_matches(client: BastionClient) -> None:
    found = await _walk(client, "q=black", limit=100)
    assert len(found) >= 20
    assert all("black" in f"{p['name']} {p['description']}".lower() for p in found)


async def test_filters_combine_with_the_query(client: BastionClient) -> None:
    everything = (await _page(client, "q=pro&limit=100"))["data"]
    narrowed = (await _page(client, "q=pro&category_id=2&price_min=10000&price_max=200000"))["data"]
    assert narrowed, "the demo data has Pro audio products in this range"
    assert all(p["category_id"] == 2 and 10000 <= p["price_cents"] <= 200000 for p in narrowed)
    assert {p["id"] for p in narrowed} < {p["id"] for p in everything}


@pytest.mark.parametrize(
    ("sort", "field", "descending"),
    [
        ("price", "price_cents", False),
        ("-price", "price_cents", True),
        ("name", "name", False),
        ("-popularity", "popularity_score", True),
    ],
)
async def test_every_sort_orders_the_same_matches(
    client: BastionClient, sort: str, field: str, descending: bool
) -> None:
    ranked = await _walk(client, "q=speaker", limit=100)
    ordered = await _walk(client, f"q=speaker&sort={sort}", limit=4)
    assert {p["id"] for p in ordered} == {p["id"] for p in ranked}
    assert len(ordered) == len({p["id"] for p in ordered}) >= 4
    values = [p[field] for p in ordered]
    assert values == sorted(values, reverse=descending)


async def test_ranked_pages_neither_repeat_nor_skip(client: BastionClient) -> None:
    whole = (await _page(client, "q=black&limit=100"))["data"]
    assert len(whole) > 10
    paged = await _walk(client, "q=black", limit=3)
    assert [p["id"] for p in paged] == [p["id"] for p in whole]


async def test_a_page_cursor_survives_a_new_better_match(client: BastionClient) -> None:
    first = await _page(client, "q=black&limit=3")
    # Ranked before the cursor: it must neither shift the next page nor appear in it.
    await _create(client, name="Black Black Black", description="black")
    rest = await _walk(client, "q=black", limit=100)
    after = await _page(client, f"q=black&limit=100&cursor={first['pagination']['next_cursor']}")
    shown = [p["id"] for p in first["data"]] + [p["id"] for p in after["data"]]
    assert len(shown) == len(set(shown)) == len(rest) - 1


async def test_inactive_products_are_found_by_admins_only(client: BastionClient) -> None:
    product = await _create(client, name="Quokka Lamp")
    with client.acting_as(ADMIN):
        assert (await client.delete(f"{API}/products/{product['id']}")).status_code == 204
        assert await _names(client, "q=quokka") == ["Quokka Lamp"]
    assert await _names(client, "q=quokka") == []


async def test_a_renamed_product_is_found_by_its_new_name(client: BastionClient) -> None:
    product = await _create(client, name="Wombat Chair")
    with client.acting_as(ADMIN):
        renamed = await client.patch(
            f"{API}/products/{product['id']}", json={"name": "Koala Chair"}
        )
    assert renamed.status_code == 200
    assert await _names(client, "q=koala") == ["Koala Chair"]
    assert await _names(client, "q=wombat") == []


async def test_relevance_without_a_query_is_the_default_order(client: BastionClient) -> None:
    default = await _page(client, "limit=10")
    relevance = await _page(client, "limit=10&sort=relevance")
    blank = await _page(client, "limit=10&q=%20%20")
    assert default["data"] == relevance["data"] == blank["data"]
    scores = [p["popularity_score"] for p in default["data"]]
    assert scores == sorted(scores, reverse=True)


async def test_a_query_without_words_finds_nothing(client: BastionClient) -> None:
    assert await _names(client, "q=%22*%28-") == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("q=phone&sort=best", "sort"),
        ("q=" + "a" * 201, "q"),
        ("q=phone&cursor=not-a-cursor", "cursor"),
        ("q=phone&price_min=500&price_max=100", "price_max"),
    ],
)
async def test_bad_parameters_are_refused(client: BastionClient, query: str, field: str) -> None:
    response = await client.get(f"{API}/products?{query}")
    assert response.status_code == 422
    assert response.json()["code"] == "validation_failed"
    assert response.json()["errors"][0]["field"] == field


async def test_a_cursor_of_another_query_is_refused(client: BastionClient) -> None:
    cursor = (await _page(client, "q=black&limit=2"))["pagination"]["next_cursor"]
    response = await client.get(f"{API}/products?q=white&cursor={cursor}")
    assert response.status_code == 422
    assert response.json()["errors"][0]["code"] == "invalid_cursor"
