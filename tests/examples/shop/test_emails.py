"""The shop's emails are jobs, written with the change that causes them: the welcome
email with the account, the confirmation with the order (shop-api.md: "welcome email
queued", "confirmation email queued")."""

from __future__ import annotations

from typing import Any

import pytest

from bastion import Runtime
from bastion.mail import MemoryTransport
from bastion.testing import BastionClient
from tests.examples.shop.shoppers import API, CARD, fill_cart, jobs_named, make_product, make_user
from tests.jobs.conftest import run_until
from tests.support.gateway import PaymentGatewayProcess

PASSWORD = "violet-lantern-orbit-42"


@pytest.fixture
def bastion_settings_overrides(payment_gateway: PaymentGatewayProcess) -> dict[str, Any]:
    return {
        "shop": {"seed_demo_data": False, "gateway_url": payment_gateway.url},
        "mail": {"backend": "memory", "from_address": "Shop <shop@example.com>"},
        "jobs": {"poll_interval_s": 0.05},
    }


def _sent(runtime: Runtime) -> list[Any]:
    transport = runtime.mail.transport
    assert isinstance(transport, MemoryTransport)
    return list(transport.sent)


def _emails_sent(runtime: Runtime) -> bool:
    return all(job.status == "succeeded" for job in jobs_named(runtime, "bastion.send_email"))


async def test_registering_sends_the_welcome_email(client: BastionClient, runtime: Runtime) -> None:
    response = await client.post(
        f"{API}/auth/register",
        json={"email": "ada@example.com", "password": PASSWORD, "name": "Ada"},
    )
    assert response.status_code == 201
    [job] = jobs_named(runtime, "bastion.send_email")
    assert (job.args["template"], job.args["to"]) == ("welcome", ["ada@example.com"])

    await run_until(runtime, lambda: _emails_sent(runtime))
    [email] = _sent(runtime)
    assert email["To"] == "ada@example.com"
    assert email["Subject"] == "Welcome to the bastion shop, Ada"


async def test_a_refused_registration_sends_nothing(
    client: BastionClient, runtime: Runtime
) -> None:
    response = await client.post(
        f"{API}/auth/register", json={"email": "ada@example.com", "password": "password123"}
    )
    assert response.json()["code"] == "weak_password"
    assert jobs_named(runtime, "bastion.send_email") == []


async def test_an_order_sends_its_confirmation_in_the_buyers_language(
    client: BastionClient, runtime: Runtime
) -> None:
    shopper = make_user(runtime, "ada@example.com", name="Ada")
    fill_cart(runtime, shopper, {make_product(runtime, price_cents=1250, name="Kettle"): 2})
    with client.acting_as(shopper):
        order = await client.post(
            f"{API}/checkout?lang=es", json=CARD, headers={"Idempotency-Key": "k"}
        )
    assert order.status_code == 201

    await run_until(runtime, lambda: _emails_sent(runtime))
    [email] = _sent(runtime)
    assert email["Subject"] == f"Your order #{order.json()['id']} is confirmed"
    text = email.get_body(preferencelist=("plain",)).get_content()
    assert "2 x Kettle" in text
    # Amounts are formatted for the locale asked for (Spanish: "25,00 US$").
    assert "25,00" in text
