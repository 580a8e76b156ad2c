"""The shop's request and response bodies (shop-api.md: Catalog, Cart, Checkout and orders,
Administration)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from bastion import OffsetPage

Name = Annotated[str, Field(min_length=1, max_length=200)]
Cents = Annotated[int, Field(ge=0, le=100_000_000)]
Count = Annotated[int, Field(ge=0, le=1_000_000)]
ProductSort = Literal["relevance", "price", "-price", "name", "-popularity"]


class CategoryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=100)]
    slug: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")]


class CategoryOut(BaseModel):
    id: int
    name: str
    slug: str


class ProductIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    description: Annotated[str, Field(max_length=5000)] = ""
    price_cents: Cents
    stock: Count = 0
    weight_grams: Count = 0
    category_id: int
    is_active: bool = True


class ProductPatch(BaseModel):
    """Only the fields present are changed."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: Annotated[str, Field(max_length=5000)] | None = None
    price_cents: Cents | None = None
    stock: Count | None = None
    weight_grams: Count | None = None
    category_id: int | None = None
    is_active: bool | None = None


class ProductOut(BaseModel):
    id: int
    name: str
    description: str
    price_cents: int
    stock: int
    weight_grams: int
    category_id: int
    is_active: bool
    image_url: str | None = None
    """A signed download URL of the product's image, valid ``files.url_ttl_s``."""
    popularity_score: int
    created_at: datetime
    updated_at: datetime


# -- cart ---------------------------------------------------------------------------------


class CartItemIn(BaseModel):
    """Add ``quantity`` of a product to the cart (its line must stay within 1 to 99)."""

    model_config = ConfigDict(extra="forbid")

    product_id: Annotated[int, Field(ge=1)]
    # Any integer is accepted here: a line outside 1 to 99 is the contract's own 422
    # ``quantity_out_of_range``, not a generic validation failure.
    quantity: int


class CartQuantityIn(BaseModel):
    """Set a line's quantity; 0 removes it."""

    model_config = ConfigDict(extra="forbid")

    quantity: int


class LineOut(BaseModel):
    """A cart line, or an order's item (with the price it was bought at)."""

    product_id: int
    name: str
    unit_price_cents: int
    quantity: int
    line_total_cents: int


class CartOut(BaseModel):
    items: list[LineOut]
    subtotal_cents: int
    item_count: int
    """Units in the cart, all lines together."""


# -- checkout and orders --------------------------------------------------------------------

ShippingMethod = Literal["standard", "express"]
PaymentMethod = Literal["card", "credits"]


class AddressIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=200)]
    line1: Annotated[str, Field(min_length=1, max_length=200)]
    city: Annotated[str, Field(min_length=1, max_length=100)]
    zip_code: Annotated[str, Field(pattern=r"^[0-9]{5}$")]
    country: Annotated[str, Field(min_length=2, max_length=100)]


class CheckoutIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shipping_address: AddressIn
    shipping_method: ShippingMethod
    payment_method: PaymentMethod
    payment_token: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    """The card's token from the payment form (card only)."""
    use_credits: bool = False
    """Spend available credits first, the card pays the rest (card only)."""


class ShippingOut(BaseModel):
    method: ShippingMethod
    cost_cents: int
    estimated_days: int
    provider: str


class OrderOut(BaseModel):
    id: int
    status: Literal["paid", "refunded"]
    items: list[LineOut]
    subtotal_cents: int
    shipping: ShippingOut
    credits_applied_cents: int
    total_cents: int
    """Subtotal plus shipping."""
    charged_cents: int
    """What the card paid: the total less the credits applied."""
    payment_id: str | None
    """The gateway's charge id; ``null`` when credits paid everything."""
    created_at: datetime


class AdminOrderOut(OrderOut):
    """An order as admins list it: with its buyer and refund."""

    user_id: int
    refunded_at: datetime | None
    refunded_to: Literal["card", "credits"] | None


class RefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, Field(max_length=1000)]
    to: Literal["card", "credits"]
    """``card``: the charge goes back to the card and spent credits to the credits;
    ``credits``: the whole total becomes credits."""


# -- credits ----------------------------------------------------------------------------------


class CreditAdjustmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount_cents: Annotated[int, Field(ge=-100_000_000, le=100_000_000)]
    """Non-zero: positive grants credits, negative takes them."""
    reason: Annotated[str, Field(max_length=500)]


class CreditBalanceOut(BaseModel):
    balance_cents: int


class CreditEntryOut(BaseModel):
    id: int
    amount_cents: int
    reason: str
    created_at: datetime


class CreditsOut(BaseModel):
    balance_cents: int
    entries: OffsetPage[CreditEntryOut]
