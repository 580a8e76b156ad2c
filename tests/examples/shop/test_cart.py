"""A signed-in user's cart against its HTTP contract (shop-api.md, Cart)."""

from __future__ import annotations

import anyio
import pytest

from bastion import Runtime
from bastion.testing import BastionClient
from tests.examples.shop.shoppers import (
    API,
    BAD_CART_CHANGES,
    cart_lines,
    make_product,
    make_user,
    problem,
)


async def test_lines_add_up_and_the_cart_reports_its_totals(
    client: BastionClient, runtime: Runtime
) -> None:
    shopper = make_user(runtime, "cart@example.com")
    kettle = make_product(runtime, price_cents=1250, name="Kettle")
    lamp = make_product(runtime, price_cents=399, name="Lamp")
    with client.acting_as(shopper):
        assert (await client.get(f"{API}/cart")).json() == {
            "items": [],
            "subtotal_cents": 0,
            "item_count": 0,
        }
        first = await client.post(f"{API}/cart/items", json={"product_id": kettle, "quantity": 2})
        await client.post(f"{API}/cart/items", json={"product_id": lamp, "quantity": 1})
        again = await client.post(f"{API}/cart/items", json={"product_id": kettle, "quantity": 3})
        fetched = await client.get(f"{API}/cart")

    assert first.status_code == 200
    assert again.status_code == 200
    assert (
        again.json()
        == fetched.json()
        == {
            "items": [
                {
                    "product_id": kettle,
                    "name": "Kettle",
                    "unit_price_cents": 1250,
                    "quantity": 5,
                    "line_total_cents": 6250,
                },
                {
                    "product_id": lamp,
                    "name": "Lamp",
                    "unit_price_cents": 399,
                    "quantity": 1,
                    "line_total_cents": 399,
                },
            ],
            "subtotal_cents": 6649,
            "item_count": 6,
        }
    )


async def test_patch_sets_a_quantity_and_zero_or_delete_removes_the_line(
    client: BastionClient, runtime: Runtime
) -> None:
    shopper = make_user(runtime, "cart@example.com")
    kettle, lamp = make_product(runtime), make_product(runtime)
    with client.acting_as(shopper):
        await client.post(f"{API}/cart/items", json={"product_id": kettle, "quantity": 2})
        await client.post(f"{API}/cart/items", json={"product_id": lamp, "quantity": 2})
        patched = await client.patch(f"{API}/cart/items/{kettle}", json={"quantity": 7})
        assert patched.status_code == 200
        assert cart_lines(runtime, shopper) == {kettle: 7, lamp: 2}
        zeroed = await client.patch(f"{API}/cart/items/{kettle}", json={"quantity": 0})
        assert [item["product_id"] for item in zeroed.json()["items"]] == [lamp]
        deleted = await client.delete(f"{API}/cart/items/{lamp}")
    assert deleted.status_code == 200
    assert deleted.json()["items"] == []
    assert cart_lines(runtime, shopper) == {}


@pytest.mark.parametrize(("method", "path", "body", "expected"), BAD_CART_CHANGES)
async def test_bad_cart_changes_are_refused_and_change_nothing(
    client: BastionClient,
    runtime: Runtime,
    method: str,
    path: str,
    body: dict[str, object] | None,
    expected: tuple[int, str],
) -> None:
    shopper = make_user(runtime, "cart@example.com")
    product = make_product(runtime)
    with client.acting_as(shopper):
        await client.post(f"{API}/cart/items", json={"product_id": product, "quantity": 5})
        if body is not None and body.get("product_id") == "P":
            body = {**body, "product_id": product}
        response = await client.request(method, API + path.replace("/P", f"/{product}"), json=body)
    assert problem(response) == expected
    assert cart_lines(runtime, shopper) == {product: 5}


async def test_the_quantity_error_names_the_range_in_the_callers_language(
    client: BastionClient, runtime: Runtime
) -> None:
    shopper = make_user(runtime, "cart@example.com")
    product = make_product(runtime)
    with client.acting_as(shopper):
        response = await client.post(
            f"{API}/cart/items?lang=es", json={"product_id": product, "quantity": 100}
        )
    assert response.json()["detail"] == (
        "Una línea del carrito admite entre 1 y 99 unidades de un producto."
    )


async def test_inactive_products_cannot_be_added(client: BastionClient, runtime: Runtime) -> None:
    shopper = make_user(runtime, "cart@example.com")
    product = make_product(runtime)
    from examples.shop.models import Product

    with runtime.database.transaction() as session:
        row = session.get(Product, product)
        assert row is not None
        row.is_active = False
    with client.acting_as(shopper):
        response = await client.post(
            f"{API}/cart/items", json={"product_id": product, "quantity": 1}
        )
    assert problem(response) == (404, "not_found")


async def test_each_user_sees_only_their_own_cart(client: BastionClient, runtime: Runtime) -> None:
    ada, bob = make_user(runtime, "ada@example.com"), make_user(runtime, "bob@example.com")
    product = make_product(runtime)
    with client.acting_as(ada):
        await client.post(f"{API}/cart/items", json={"product_id": product, "quantity": 3})
    with client.acting_as(bob):
        assert (await client.get(f"{API}/cart")).json()["items"] == []
        assert problem(await client.delete(f"{API}/cart/items/{product}")) == (404, "not_found")
    assert cart_lines(runtime, ada) == {product: 3}


async def test_the_cart_needs_a_signed_in_user(client: BastionClient) -> None:
    assert problem(await client.get(f"{API}/cart")) == (401, "not_authenticated")
    response = await client.post(f"{API}/cart/items", json={"product_id": 1, "quantity": 1})
    assert problem(response) == (401, "not_authenticated")


async def test_concurrent_adds_all_count_and_never_pass_99(
    client: BastionClient, runtime: Runtime
) -> None:
    shopper = make_user(runtime, "cart@example.com")
    product = make_product(runtime)
    statuses: list[int] = []

    async def add() -> None:
        response = await client.post(
            f"{API}/cart/items", json={"product_id": product, "quantity": 10}
        )
        statuses.append(response.status_code)

    with client.acting_as(shopper):
        async with anyio.create_task_group() as group:
            for _ in range(12):
                group.start_soon(add)
    assert sorted(statuses) == [200] * 9 + [422] * 3
    assert cart_lines(runtime, shopper) == {product: 90}
