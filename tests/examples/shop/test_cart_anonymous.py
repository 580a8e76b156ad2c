"""An anonymous visitor's cart in the browser session, and its merge into the user's
stored cart at login (shop-api.md, Cart)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from bastion import Principal, Runtime
from bastion.auth import User, principal_for
from bastion.auth.sessions import hash_session_id
from bastion.testing import BastionClient
from examples.shop.models import CartItem, Product
from tests.examples.shop.shoppers import (
    API,
    BAD_CART_CHANGES,
    cart_lines,
    fill_cart,
    make_product,
    problem,
)

pytestmark = pytest.mark.db

PASSWORD = "correct horse battery staple"


@pytest.fixture
def bastion_settings_overrides() -> dict[str, Any]:
    return {"shop": {"seed_demo_data": False}}


def _line(product_id: int, name: str, price: int, quantity: int) -> dict[str, Any]:
    return {
        "product_id": product_id,
        "name": name,
        "unit_price_cents": price,
        "quantity": quantity,
        "line_total_cents": price * quantity,
    }


def _deactivate(runtime: Runtime, product_id: int) -> None:
    with runtime.database.transaction() as session:
        product = session.get(Product, product_id)
        assert product is not None
        product.is_active = False


async def _session_data(client: BastionClient) -> dict[str, Any]:
    data: dict[str, Any] = (await client.get(f"{API}/session")).json()["data"]
    return data


async def _add(client: BastionClient, product_id: int, quantity: int) -> httpx.Response:
    return await client.post(
        f"{API}/cart/items", json={"product_id": product_id, "quantity": quantity}
    )


def _principal(runtime: Runtime, user_id: int) -> Principal:
    with runtime.database.read_transaction() as session:
        user = session.get(User, user_id)
        assert user is not None
        return principal_for(user, runtime.settings.auth.roles)


async def _register_and_login(client: BastionClient, email: str) -> httpx.Response:
    credentials = {"email": email, "password": PASSWORD}
    assert (await client.post(f"{API}/auth/register", json=credentials)).status_code == 201
    return await client.post(f"{API}/auth/login", json=credentials)


async def test_a_visitor_adds_changes_and_removes_lines_in_the_session(
    client: BastionClient, runtime: Runtime
) -> None:
    kettle = make_product(runtime, price_cents=1250, name="Kettle")
    lamp = make_product(runtime, price_cents=399, name="Lamp")
    await client.get(f"{API}/session")
    assert (await client.get(f"{API}/cart")).json() == {
        "items": [],
        "subtotal_cents": 0,
        "item_count": 0,
    }
    await _add(client, kettle, 2)
    await _add(client, lamp, 1)
    again = await _add(client, kettle, 3)
    fetched = await client.get(f"{API}/cart")
    assert again.status_code == 200
    assert (
        again.json()
        == fetched.json()
        == {
            "items": [_line(kettle, "Kettle", 1250, 5), _line(lamp, "Lamp", 399, 1)],
            "subtotal_cents": 6649,
            "item_count": 6,
        }
    )
    patched = await client.patch(f"{API}/cart/items/{kettle}", json={"quantity": 7})
    assert patched.json()["items"][0]["quantity"] == 7
    zeroed = await client.patch(f"{API}/cart/items/{lamp}", json={"quantity": 0})
    assert [item["product_id"] for item in zeroed.json()["items"]] == [kettle]
    deleted = await client.delete(f"{API}/cart/items/{kettle}")
    assert deleted.status_code == 200
    assert deleted.json()["items"] == []
    assert "cart" not in await _session_data(client)
    # Nothing of it went to the database's carts.
    with runtime.database.read_transaction() as session:
        assert session.scalar(select(func.count()).select_from(CartItem)) == 0


@pytest.mark.parametrize(("method", "path", "body", "expected"), BAD_CART_CHANGES)
async def test_bad_changes_to_a_session_cart_are_refused_and_change_nothing(
    client: BastionClient,
    runtime: Runtime,
    method: str,
    path: str,
    body: dict[str, object] | None,
    expected: tuple[int, str],
) -> None:
    product = make_product(runtime)
    await client.get(f"{API}/session")
    await _add(client, product, 5)
    if body is not None and body.get("product_id") == "P":
        body = {**body, "product_id": product}
    response = await client.request(method, API + path.replace("/P", f"/{product}"), json=body)
    assert problem(response) == expected
    assert (await _session_data(client))["cart"] == [{"product_id": product, "quantity": 5}]


async def test_without_a_session_or_a_user_the_cart_is_401(
    client: BastionClient, runtime: Runtime
) -> None:
    product = make_product(runtime)
    assert problem(await client.get(f"{API}/cart")) == (401, "not_authenticated")
    assert problem(await _add(client, product, 1)) == (401, "not_authenticated")
    assert "set-cookie" not in (await client.get(f"{API}/cart")).headers


async def test_two_tabs_of_one_session_share_one_cart(
    client: BastionClient, runtime: Runtime
) -> None:
    kettle, lamp = make_product(runtime), make_product(runtime)
    await client.get(f"{API}/session")
    async with BastionClient(runtime.asgi(), cookies=client.cookies) as other_tab:
        await _add(client, kettle, 2)
        await _add(other_tab, lamp, 1)
        await _add(other_tab, kettle, 1)
        first = (await client.get(f"{API}/cart")).json()
        second = (await other_tab.get(f"{API}/cart")).json()
    assert first == second
    assert [(i["product_id"], i["quantity"]) for i in first["items"]] == [(kettle, 3), (lamp, 1)]


async def test_lines_of_products_gone_or_deactivated_are_dropped(
    client: BastionClient, runtime: Runtime
) -> None:
    kettle, lamp = make_product(runtime), make_product(runtime)
    await client.get(f"{API}/session")
    await _add(client, kettle, 2)
    await _add(client, lamp, 4)
    _deactivate(runtime, lamp)
    assert [i["product_id"] for i in (await client.get(f"{API}/cart")).json()["items"]] == [kettle]
    assert problem(await client.delete(f"{API}/cart/items/{lamp}")) == (404, "not_found")
    await client.patch(f"{API}/cart/items/{kettle}", json={"quantity": 3})
    assert (await _session_data(client))["cart"] == [{"product_id": kettle, "quantity": 3}]


async def test_a_malformed_session_cart_is_read_as_its_well_formed_lines(
    client: BastionClient, runtime: Runtime
) -> None:
    kettle = make_product(runtime)
    await client.get(f"{API}/session")
    session_id = client.cookies.get(runtime.settings.auth.session_cookie_name)
    assert session_id is not None
    # Written straight into the store: what a store holds is read back, never trusted.
    record = await runtime.authenticator.sessions.load(hash_session_id(session_id))
    assert record is not None
    record.data["cart"] = [
        "junk",
        {"product_id": "1", "quantity": 1},
        {"product_id": kettle, "quantity": 500},
        {"product_id": kettle, "quantity": True},
        {"product_id": 999_999, "quantity": 1},
        {"product_id": kettle, "quantity": 2},
    ]
    await runtime.authenticator.sessions.save(record)
    cart = (await client.get(f"{API}/cart")).json()
    assert [(i["product_id"], i["quantity"]) for i in cart["items"]] == [(kettle, 2)]


async def test_login_merges_the_session_cart_into_the_users_cart(
    client: BastionClient, runtime: Runtime
) -> None:
    kettle = make_product(runtime, price_cents=1000, name="Kettle")
    lamp = make_product(runtime, price_cents=500, name="Lamp")
    mug = make_product(runtime, price_cents=300, name="Mug")
    gone = make_product(runtime, name="Gone")
    await client.get(f"{API}/session")
    await _add(client, mug, 3)
    await _add(client, kettle, 10)
    await _add(client, gone, 2)
    _deactivate(runtime, gone)

    credentials = {"email": "ada@example.com", "password": PASSWORD}
    registered = await client.post(f"{API}/auth/register", json=credentials)
    user_id = registered.json()["id"]
    ada = _principal(runtime, user_id)
    fill_cart(runtime, ada, {kettle: 95, lamp: 1})
    login = await client.post(f"{API}/auth/login", json=credentials)
    assert login.status_code == 200

    # Quantities add up and stop at 99; the deactivated product is dropped; lines new to
    # the user's cart come after theirs.
    assert cart_lines(runtime, ada) == {kettle: 99, lamp: 1, mug: 3}
    cart = (await client.get(f"{API}/cart")).json()
    assert cart["items"] == [
        _line(kettle, "Kettle", 1000, 99),
        _line(lamp, "Lamp", 500, 1),
        _line(mug, "Mug", 300, 3),
    ]
    assert "cart" not in await _session_data(client)

    # Signed out again, the browser starts a fresh, empty session cart.
    csrf = {"X-CSRF-Token": login.json()["csrf_token"]}
    assert (await client.post(f"{API}/auth/logout", headers=csrf)).status_code == 204
    await client.get(f"{API}/session")
    assert (await client.get(f"{API}/cart")).json()["items"] == []


async def test_a_login_without_a_session_cart_leaves_the_users_cart_alone(
    client: BastionClient, runtime: Runtime
) -> None:
    kettle = make_product(runtime)
    login = await _register_and_login(client, "bob@example.com")
    assert login.status_code == 200
    csrf = {"X-CSRF-Token": login.json()["csrf_token"]}
    added = await client.post(
        f"{API}/cart/items", json={"product_id": kettle, "quantity": 2}, headers=csrf
    )
    assert added.status_code == 200
    second = await client.post(
        f"{API}/auth/login", json={"email": "bob@example.com", "password": PASSWORD}
    )
    assert second.status_code == 200
    cart = (await client.get(f"{API}/cart")).json()
    assert [(i["product_id"], i["quantity"]) for i in cart["items"]] == [(kettle, 2)]
