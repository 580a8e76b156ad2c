"""The shop's realtime surface (shop-api.md, Cart (realtime)).

- Channel ``cart``, per user: every change to a user's cart sends ``cart_updated`` with
  the new cart to all of that user's connections, on every server process.
- Live query ``product`` (``{"type": "subscribe", "query": "product", "args":
  {"product_id": 7}}``): the product, then the product again after each commit that
  changes it (stock after a checkout, a new price), unchanged results not resent.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from bastion.realtime import send
from examples.shop import catalog
from examples.shop.app import app
from examples.shop.schemas import CartOut

app.channel("cart")
app.live_query("product", catalog.get_product)


def cart_updated(session: Session, user_id: int, current: CartOut) -> None:
    """Send the user's cart to all their connections once ``session`` commits."""
    send(session, "cart", "cart_updated", current.model_dump(mode="json"), user_id=user_id)
