"""Shipping costs, exactly as shop-api.md ("Checkout and orders") states them.

    cost = base (500 standard, 1500 express)
         + 50 per kg of the items' total weight (grams / 1000 * 50, rounded half-up)
         + 10 * |first three digits of the zip - first three of the warehouse's zip|

and a cost above 5000 is reduced by 10 %: cost * 0.9, rounded half-up to the cent.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

Method = Literal["standard", "express"]


@dataclass(frozen=True, slots=True)
class ShippingQuote:
    method: Method
    cost_cents: int
    estimated_days: int
    provider: str


@dataclass(frozen=True, slots=True)
class _Service:
    base_cents: int
    estimated_days: int
    provider: str


SERVICES: dict[Method, _Service] = {
    "standard": _Service(500, 3, "USPS"),
    "express": _Service(1500, 1, "FedEx"),
}
CENTS_PER_KG = 50
CENTS_PER_ZONE = 10
DISCOUNT_ABOVE_CENTS = 5000
DISCOUNTED_SHARE = Decimal("0.9")


def _half_up(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def quote_shipping(
    method: Method, *, weight_grams: int, zip_code: str, warehouse_zip: str
) -> ShippingQuote:
    """The cost, delay and carrier of sending ``weight_grams`` to ``zip_code``.

    Example::

        quote_shipping("standard", weight_grams=1000, zip_code="10001", warehouse_zip="10001")
        # ShippingQuote(method='standard', cost_cents=550, estimated_days=3, provider='USPS')
    """
    service = SERVICES[method]
    weight_cents = _half_up(Decimal(weight_grams) / 1000 * CENTS_PER_KG)
    zones = abs(int(zip_code[:3]) - int(warehouse_zip[:3]))
    cost = service.base_cents + weight_cents + CENTS_PER_ZONE * zones
    if cost > DISCOUNT_ABOVE_CENTS:
        cost = _half_up(cost * DISCOUNTED_SHARE)
    return ShippingQuote(method, cost, service.estimated_days, service.provider)
