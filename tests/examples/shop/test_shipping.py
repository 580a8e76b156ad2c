"""The shipping formula of shop-api.md, case by case (a pure function: no database)."""

from __future__ import annotations

import pytest

from examples.shop.shipping import ShippingQuote, quote_shipping


@pytest.mark.parametrize(
    ("method", "grams", "zip_code", "cost"),
    [
        # base only: same zone as the warehouse, nothing to weigh
        ("standard", 0, "10001", 500),
        ("express", 0, "10099", 1500),
        # 50 per kg: 1 kg is 50, 2.5 kg is 125
        ("standard", 1000, "10001", 550),
        ("express", 2500, "10001", 1625),
        # the weight part is rounded half-up to the cent: 1.01 kg is 50.5 → 51, 1.009 kg → 50
        ("standard", 1010, "10001", 551),
        ("standard", 1009, "10001", 550),
        # 10 per zone of distance, either side of the warehouse (100): 021 is 79 zones away
        ("standard", 0, "02139", 1290),
        ("standard", 0, "12345", 730),
        # exactly 5000 is not discounted: 500 + 10 * 450
        ("standard", 0, "55001", 5000),
        # above 5000 it is 90 %, half-up: 5001 → 4500.9 → 4501
        ("standard", 10, "55001", 4501),
        # 5005 → 4504.5 → 4505 (half-up, not banker's rounding)
        ("standard", 100, "55001", 4505),
        # far and heavy, express: 1500 + 125 + 10 * 841 = 10035 → 9031.5 → 9032
        ("express", 2500, "94105", 9032),
    ],
)
def test_the_cost_follows_the_contracts_formula(
    method: str, grams: int, zip_code: str, cost: int
) -> None:
    quote = quote_shipping(
        method,  # type: ignore[arg-type]
        weight_grams=grams,
        zip_code=zip_code,
        warehouse_zip="10001",
    )
    assert quote.cost_cents == cost


def test_each_method_has_its_carrier_and_delay() -> None:
    assert quote_shipping(
        "standard", weight_grams=0, zip_code="10001", warehouse_zip="10001"
    ) == ShippingQuote("standard", 500, 3, "USPS")
    assert quote_shipping(
        "express", weight_grams=0, zip_code="10001", warehouse_zip="10001"
    ) == ShippingQuote("express", 1500, 1, "FedEx")


def test_the_warehouse_zip_is_configurable() -> None:
    west = quote_shipping("standard", weight_grams=0, zip_code="94105", warehouse_zip="94016")
    assert west.cost_cents == 500 + 10 * 1
