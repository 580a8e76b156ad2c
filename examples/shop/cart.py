"""The cart of a signed-in user, kept server-side (shop-api.md, Cart).

One row per product in ``shop_cart_items``; a line holds 1 to 99 units. The anonymous
visitor's cart in the browser session, its merge into the user's cart at login and the
realtime ``cart_updated`` event are issue #5; until then every cart endpoint needs a
signed-in user.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from bastion import BastionError, Context, NotFound
from examples.shop.app import app, signed_in
from examples.shop.models import MAX_LINE_QUANTITY, CartItem, Product, insert_into
from examples.shop.schemas import CartItemIn, CartOut, CartQuantityIn, LineOut


def load_cart(session: Session, user_id: int) -> CartOut:
    """The user's cart at today's prices, lines in the order they were added."""
    rows = session.execute(
        select(CartItem.product_id, CartItem.quantity, Product.name, Product.price_cents)
        .join(Product, Product.id == CartItem.product_id)
        .where(CartItem.user_id == user_id)
        .order_by(CartItem.id)
    ).all()
    items = [
        LineOut(
            product_id=row.product_id,
            name=row.name,
            unit_price_cents=row.price_cents,
            quantity=row.quantity,
            line_total_cents=row.price_cents * row.quantity,
        )
        for row in rows
    ]
    return CartOut(
        items=items,
        subtotal_cents=sum(item.line_total_cents for item in items),
        item_count=sum(item.quantity for item in items),
    )


def _out_of_range() -> BastionError:
    return BastionError("quantity_out_of_range", min=1, max=MAX_LINE_QUANTITY)


def _line(session: Session, user_id: int, product_id: int) -> CartItem:
    line = session.scalar(
        select(CartItem).where(CartItem.user_id == user_id, CartItem.product_id == product_id)
    )
    if line is None:
        raise NotFound(resource="cart_item")
    return line


@app.query("/cart", tags=["cart"])
def get_cart(ctx: Context) -> CartOut:
    """The caller's cart."""
    return load_cart(ctx.session, signed_in(ctx))


@app.mutation("/cart/items", status_code=200, permissions=["write:own"], tags=["cart"])
def add_cart_item(ctx: Context, body: CartItemIn) -> CartOut:
    """Add units of a product; they join the product's line if it has one."""
    user_id = signed_in(ctx)
    product = ctx.session.get(Product, body.product_id)
    if product is None or not product.is_active:
        raise NotFound(resource="product")
    if not 1 <= body.quantity <= MAX_LINE_QUANTITY:
        raise _out_of_range()
    # One statement, so two tabs adding at once both count and the line still never
    # passes 99: the update only happens while the sum stays in range.
    insert = insert_into(ctx.session, CartItem).values(
        user_id=user_id, product_id=body.product_id, quantity=body.quantity
    )
    stored = ctx.session.execute(
        insert.on_conflict_do_update(
            index_elements=["user_id", "product_id"],
            set_={"quantity": CartItem.quantity + insert.excluded.quantity},
            where=CartItem.quantity + insert.excluded.quantity <= MAX_LINE_QUANTITY,
        ).returning(CartItem.id)
    ).scalar_one_or_none()
    if stored is None:
        raise _out_of_range()
    return load_cart(ctx.session, user_id)


@app.mutation("/cart/items/{product_id}", method="PATCH", permissions=["write:own"], tags=["cart"])
def set_cart_item(ctx: Context, product_id: int, body: CartQuantityIn) -> CartOut:
    """Set the quantity of a line; 0 removes it."""
    user_id = signed_in(ctx)
    line = _line(ctx.session, user_id, product_id)
    if body.quantity == 0:
        ctx.session.delete(line)
    elif 1 <= body.quantity <= MAX_LINE_QUANTITY:
        line.quantity = body.quantity
    else:
        raise _out_of_range()
    ctx.session.flush()
    return load_cart(ctx.session, user_id)


@app.mutation(
    "/cart/items/{product_id}",
    method="DELETE",
    status_code=200,
    permissions=["write:own"],
    tags=["cart"],
)
def remove_cart_item(ctx: Context, product_id: int) -> CartOut:
    """Remove a line."""
    user_id = signed_in(ctx)
    removed = ctx.session.execute(
        delete(CartItem).where(CartItem.user_id == user_id, CartItem.product_id == product_id)
    )
    if removed.rowcount == 0:  # type: ignore[attr-defined]
        raise NotFound(resource="cart_item")
    return load_cart(ctx.session, user_id)
