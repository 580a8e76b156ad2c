"""The shop app object: its declarations are in the modules imported at the bottom."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from bastion import App
from examples.shop.models import Base

HERE = Path(__file__).parent


class ShopSettings(BaseModel):
    """The ``[shop]`` section of ``bastion.toml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed_demo_data: bool = True
    """Fill an empty database with demo categories and products at start-up."""
    demo_products: int = Field(240, ge=0, le=100_000)
    admin_email: str = "admin@example.com"
    """The admin created on first start (``SHOP_ADMIN_EMAIL`` in bastion.toml)."""
    admin_password: SecretStr | None = None
    """Its password (``SHOP_ADMIN_PASSWORD``); generated and printed once when unset."""


app = App(
    "shop",
    metadata=Base.metadata,
    migrations=HERE / "migrations",
    messages=HERE / "messages",
    config_sections={"shop": ShopSettings},
    config=HERE / "bastion.toml",
    title="bastion shop",
    description="The flagship example app of bastion: catalog, cart, checkout, orders.",
)

# Importing these modules declares their functions on `app`.
from examples.shop import accounts, catalog, seed  # noqa: E402

__all__ = ["accounts", "app", "catalog", "seed"]
