"""Checkout against its HTTP contract, with the real gateway process (shop-api.md,
Checkout and orders): the order, its effects, replays, credits, and failures that
leave nothing behind."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from sqlalchemy import select

from bastion import Runtime
from bastion.testing import BastionClient
from bastion.webhooks import WebhookDeliveryRow
from examples.shop import payments
from examples.shop.models import CreditEntry, Product
from tests.examples.shop.conftest import ADMIN
from tests.examples.shop.shoppers import (
    ADDRESS,
    API,
    CARD,
    balance_of,
    cart_lines,
    client_of,
    fill_cart,
    grant_credits,
    jobs_named,
    make_product,
    make_user,
    orders_of,
    problem,
    stock_of,
    unrefunded,
)
from tests.jobs.conftest import eventually
from tests.support.gateway import PaymentGatewayProcess

CREDITS = {"shipping_address": ADDRESS, "shipping_method": "express", "payment_method": "credits"}


@pytest.fixture
def bastion_settings_overrides(payment_gateway: PaymentGatewayProcess) -> dict[str, Any]:
    return {
        "shop": {"seed_demo_data": False, "gateway_url": payment_gateway.url},
        "integrations": {"backoff_base_s": 0.01},
    }


async def _checkout(
    client: BastionClient, body: dict[str, Any], key: str = "key-1", lang: str = "en"
) -> Any:
    return await client.post(
        f"{API}/checkout?lang={lang}", json=body, headers={"Idempotency-Key": key}
    )


async def test_a_card_checkout_places_the_order_and_replays_it(
    client: BastionClient, runtime: Runtime, payment_gateway: PaymentGatewayProcess
) -> None:
    shopper = make_user(runtime, "ada@example.com", name="Ada")
    kettle = make_product(runtime, price_cents=2500, stock=5, weight_grams=1200, name="Kettle")
    lamp = make_product(runtime, price_cents=999, stock=1, weight_grams=300, name="Lamp")
    fill_cart(runtime, shopper, {kettle: 2, lamp: 1})
    with client.acting_as(ADMIN):
        hook = {"url": "https://crm.example.com/hooks", "events": ["order.*"], "reason": "tests"}
        assert (await client.post(f"{API}/admin/webhooks", json=hook)).status_code == 201

    with client.acting_as(shopper):
        response = await _checkout(client, {**CARD, "shipping_method": "express"})
        replay = await _checkout(client, {**CARD, "shipping_method": "express"})
        reused = await _checkout(client, CARD)

    assert response.status_code == 201, response.text
    order = response.json()
    [charge] = payment_gateway.charges()
    # express 1500 + 2.7 kg * 50 = 135, in the warehouse's zone
    assert order == {
        "id": order["id"],
        "status": "paid",
        "items": [
            {
                "product_id": kettle,
                "name": "Kettle",
                "unit_price_cents": 2500,
                "quantity": 2,
                "line_total_cents": 5000,
            },
            {
                "product_id": lamp,
                "name": "Lamp",
                "unit_price_cents": 999,
                "quantity": 1,
                "line_total_cents": 999,
            },
        ],
        "subtotal_cents": 5999,
        "shipping": {
            "method": "express",
            "cost_cents": 1635,
            "estimated_days": 1,
            "provider": "FedEx",
        },
        "credits_applied_cents": 0,
        "total_cents": 7634,
        "charged_cents": 7634,
        "payment_id": charge["id"],
        "created_at": order["created_at"],
    }
    assert order["created_at"].endswith("Z")
    assert charge["amount_cents"] == 7634
    assert (stock_of(runtime, kettle), stock_of(runtime, lamp)) == (3, 0)
    assert cart_lines(runtime, shopper) == {}
    [email] = jobs_named(runtime, "bastion.send_email")
    assert email.args["template"] == "order_confirmation"
    assert email.args["to"] == ["ada@example.com"]
    assert email.args["context"]["order_id"] == order["id"]
    with runtime.database.read_transaction() as session:
        [delivery] = session.scalars(select(WebhookDeliveryRow))
        assert delivery.event_type == "order.created"
        assert delivery.payload["id"] == order["id"]

    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.content == response.content
    assert problem(reused) == (422, "idempotency_key_reused")
    assert len(payment_gateway.charges()) == 1
    assert len(orders_of(runtime, shopper)) == 1


async def test_concurrent_duplicates_charge_once(
    client: BastionClient, runtime: Runtime, payment_gateway: PaymentGatewayProcess
) -> None:
    shopper = make_user(runtime, "ada@example.com")
    fill_cart(runtime, shopper, {make_product(runtime): 1})
    statuses: list[int] = []

    async def send() -> None:
        statuses.append((await _checkout(client, CARD)).status_code)

    with client.acting_as(shopper):
        async with anyio.create_task_group() as group:
            for _ in range(4):
                group.start_soon(send)
        assert (await _checkout(client, CARD)).status_code == 201
    assert 201 in statuses
    assert set(statuses) <= {201, 409}  # 409: idempotency_in_progress
    assert len(payment_gateway.charges()) == 1
    assert len(orders_of(runtime, shopper)) == 1


async def test_checkout_needs_an_idempotency_key_and_a_full_cart(
    client: BastionClient, runtime: Runtime, payment_gateway: PaymentGatewayProcess
) -> None:
    shopper = make_user(runtime, "ada@example.com")
    with client.acting_as(shopper):
        without_key = await client.post(f"{API}/checkout", json=CARD)
        empty = await _checkout(client, CARD)
    assert problem(without_key) == (400, "idempotency_key_required")
    assert problem(empty) == (422, "cart_empty")
    assert payment_gateway.charges() == []


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({**CARD, "payment_token": None}, "payment_token", "payment_token_required"),
        ({**CREDITS, "payment_token": "tok_visa"}, "payment_token", "card_only"),
        ({**CREDITS, "use_credits": True}, "use_credits", "card_only"),
        (
            {**CARD, "shipping_address": {**ADDRESS, "zip_code": "1234"}},
            "shipping_address.zip_code",
            None,
        ),
        ({**CARD, "shipping_method": "drone"}, "shipping_method", None),
    ],
)
async def test_bad_checkout_bodies_are_422(
    client: BastionClient, runtime: Runtime, body: dict[str, Any], field: str, code: str | None
) -> None:
    shopper = make_user(runtime, "ada@example.com")
    fill_cart(runtime, shopper, {make_product(runtime): 1})
    with client.acting_as(shopper):
        response = await _checkout(client, body)
    assert problem(response) == (422, "validation_failed")
    [error] = response.json()["errors"]
    assert error["field"] == field
    if code is not None:
        assert error["code"] == code


async def test_missing_stock_is_409_naming_the_product(
    client: BastionClient, runtime: Runtime, payment_gateway: PaymentGatewayProcess
) -> None:
    shopper = make_user(runtime, "ada@example.com")
    fill_cart(runtime, shopper, {make_product(runtime, stock=1, name="Rare Vase"): 2})
    with client.acting_as(shopper):
        response = await _checkout(client, CARD)
    assert problem(response) == (409, "insufficient_inventory")
    assert response.json()["detail"] == "Only 1 of “Rare Vase” left in stock; you asked for 2."
    assert payment_gateway.charges() == []


async def test_credits_can_pay_everything(
    client: BastionClient, runtime: Runtime, payment_gateway: PaymentGatewayProcess
) -> None:
    shopper = make_user(runtime, "ada@example.com")
    fill_cart(runtime, shopper, {make_product(runtime, price_cents=1000, weight_grams=0): 3})
    grant_credits(runtime, shopper, 10_000)
    with client.acting_as(shopper):
        response = await _checkout(client, CREDITS)
    assert response.status_code == 201, response.text
    order = response.json()
    assert (order["total_cents"], order["credits_applied_cents"], order["charged_cents"]) == (
        4500,
        4500,
        0,
    )
    assert order["payment_id"] is None
    assert payment_gateway.charges() == []
    assert balance_of(runtime, shopper) == 5500
    with runtime.database.read_transaction() as session:
        spent = session.scalar(select(CreditEntry).where(CreditEntry.amount_cents < 0))
        assert spent is not None
        assert (spent.amount_cents, spent.order_id) == (-4500, order["id"])


@pytest.mark.parametrize(
    ("lang", "detail"),
    [
        ("en", "You need 4500 credits, but only have 1200."),
        ("es", "Necesitas 4500 créditos, pero solo tienes 1200."),
    ],
)
async def test_short_credits_are_402_with_the_amounts_in_the_callers_language(
    client: BastionClient, runtime: Runtime, lang: str, detail: str
) -> None:
    shopper = make_user(runtime, "ada@example.com")
    product = make_product(runtime, price_cents=1000, weight_grams=0)
    fill_cart(runtime, shopper, {product: 3})
    grant_credits(runtime, shopper, 1200)
    with client.acting_as(shopper):
        response = await _checkout(client, CREDITS, lang=lang)
    assert problem(response) == (402, "insufficient_credits")
    assert response.json()["detail"] == detail
    assert balance_of(runtime, shopper) == 1200
    assert stock_of(runtime, product) == 10
    assert cart_lines(runtime, shopper) == {product: 3}


async def test_use_credits_spends_them_first_and_the_card_pays_the_rest(
    client: BastionClient, runtime: Runtime, payment_gateway: PaymentGatewayProcess
) -> None:
    shopper = make_user(runtime, "ada@example.com")
    fill_cart(runtime, shopper, {make_product(runtime, price_cents=2000, weight_grams=0): 1})
    grant_credits(runtime, shopper, 700)
    with client.acting_as(shopper):
        response = await _checkout(client, {**CARD, "use_credits": True})
    order = response.json()
    assert (order["total_cents"], order["credits_applied_cents"], order["charged_cents"]) == (
        2500,
        700,
        1800,
    )
    [charge] = payment_gateway.charges()
    assert (charge["id"], charge["amount_cents"]) == (order["payment_id"], 1800)
    assert balance_of(runtime, shopper) == 0


async def test_a_declined_card_is_402_and_changes_nothing(
    client: BastionClient, runtime: Runtime, payment_gateway: PaymentGatewayProcess
) -> None:
    shopper = make_user(runtime, "ada@example.com")
    product = make_product(runtime, price_cents=2000)
    fill_cart(runtime, shopper, {product: 2})
    grant_credits(runtime, shopper, 300)
    declined_before = payment_gateway.log().count("POST /charges 402")
    with client.acting_as(shopper):
        response = await _checkout(
            client, {**CARD, "payment_token": "tok_declined", "use_credits": True}
        )
    assert problem(response) == (402, "payment_declined")
    assert payment_gateway.charges() == []
    assert orders_of(runtime, shopper) == []
    assert stock_of(runtime, product) == 10
    assert cart_lines(runtime, shopper) == {product: 2}
    assert balance_of(runtime, shopper) == 300
    # A client error is not retried: one call reached the gateway.
    await eventually(lambda: payment_gateway.log().count("POST /charges 402") > declined_before)
    await anyio.sleep(0.05)
    assert payment_gateway.log().count("POST /charges 402") - declined_before == 1


async def test_stock_lost_after_charging_refunds_the_charge(
    client: BastionClient,
    runtime: Runtime,
    payment_gateway: PaymentGatewayProcess,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shopper = make_user(runtime, "ada@example.com")
    product = make_product(runtime, price_cents=2000, stock=3)
    fill_cart(runtime, shopper, {product: 2})
    grant_credits(runtime, shopper, 500)
    charge = payments.create_charge

    async def charge_then_sell_out(*args: Any, **kwargs: Any) -> payments.Charge:
        # Another order takes the stock while this one is at the gateway.
        made = await charge(*args, **kwargs)
        with runtime.database.transaction() as session:
            row = session.get(Product, product)
            assert row is not None
            row.stock = 1
        return made

    monkeypatch.setattr(payments, "create_charge", charge_then_sell_out)
    with client.acting_as(shopper):
        response = await _checkout(client, {**CARD, "use_credits": True})

    assert problem(response) == (409, "insufficient_inventory")
    [refunded] = payment_gateway.charges()
    assert refunded["refunded_cents"] == refunded["amount_cents"]
    assert orders_of(runtime, shopper) == []
    assert cart_lines(runtime, shopper) == {product: 2}
    assert balance_of(runtime, shopper) == 500
    assert stock_of(runtime, product) == 1


async def test_two_buyers_of_the_last_unit_pay_once_between_them(
    client: BastionClient, runtime: Runtime, payment_gateway: PaymentGatewayProcess
) -> None:
    product = make_product(runtime, stock=1)
    buyers = [make_user(runtime, f"buyer{i}@example.com") for i in range(2)]
    for buyer in buyers:
        fill_cart(runtime, buyer, {product: 1})
    statuses: list[int] = []

    async def buy(index: int) -> None:
        async with client_of(runtime, buyers[index]) as http:
            statuses.append((await _checkout(http, CARD, key=f"buy-{index}")).status_code)

    async with anyio.create_task_group() as group:
        for index in range(2):
            group.start_soon(buy, index)

    assert sorted(statuses) == [201, 409]
    placed = [order for buyer in buyers for order in orders_of(runtime, buyer)]
    assert len(placed) == 1
    assert [c["id"] for c in unrefunded(payment_gateway.charges())] == [placed[0].payment_id]
    assert stock_of(runtime, product) == 0
