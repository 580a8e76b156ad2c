"""The cart (shop-api.md, Cart): a signed-in user's kept server-side, a visitor's in the
browser session, merged into the user's at login.

A user's cart is one row per product in ``shop_cart_items``, shared by all their devices
and tabs. An anonymous visitor's is a list of ``{product_id, quantity}`` under
``ctx.session_data["cart"]``; the visitor needs a session first (``GET /session``), and
a caller with neither a session nor a user gets 401 ``not_authenticated``, as the
contract's error list has it. A line holds 1 to 99 units either way.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, delete, select
from sqlalchemy.orm import Session

from bastion import BastionError, Context, NotAuthenticated, NotFound, PermissionDenied
from bastion.auth import User
from examples.shop import live
from examples.shop.app import app, signed_in
from examples.shop.models import MAX_LINE_QUANTITY, CartItem, Product, insert_into
from examples.shop.schemas import CartItemIn, CartOut, CartQuantityIn, LineOut

SESSION_CART = "cart"
"""The key of the anonymous visitor's cart in the session data."""


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


def _cart_changed(session: Session, user_id: int) -> CartOut:
    """The user's cart after a change, read in the change's transaction: every change to
    a stored cart (the endpoints and the merge at login) ends here."""
    current = load_cart(session, user_id)
    live.cart_updated(session, user_id, current)
    return current


def merge_session_cart(session: Session, user: User, data: dict[str, Any]) -> None:
    """At login (``use_auth(on_login=...)``): move the visitor's session cart into the
    user's stored cart and clear it from the session.

    Quantities of a product in both carts add up, capped at 99 per line rather than
    refused: a login must not fail over a cart, and the shopper sees the capped line.
    Lines of products deleted or deactivated since they were added are dropped.
    """
    lines = _well_formed(data.pop(SESSION_CART, None))
    if not lines:
        return
    active = set(
        session.scalars(select(Product.id).where(Product.id.in_(lines), Product.is_active))
    )
    merged = False
    for product_id, quantity in lines.items():
        if product_id not in active:
            continue
        insert = insert_into(session, CartItem).values(
            user_id=user.id, product_id=product_id, quantity=quantity
        )
        summed = CartItem.quantity + insert.excluded.quantity
        session.execute(
            insert.on_conflict_do_update(
                index_elements=["user_id", "product_id"],
                set_={
                    "quantity": case((summed > MAX_LINE_QUANTITY, MAX_LINE_QUANTITY), else_=summed)
                },
            )
        )
        merged = True
    if merged:
        _cart_changed(session, user.id)


def _cart_owner(ctx: Context, *, writing: bool = False) -> int | None:
    """The signed-in caller's user id, or ``None`` for an anonymous visitor with a
    session; 401 without either, 403 for a user who may not change their own data."""
    if ctx.user is None:
        if ctx.session_data is None:
            raise NotAuthenticated()
        return None
    if writing and not ctx.user.allows("write:own"):
        raise PermissionDenied()
    return signed_in(ctx)


def _well_formed(raw: object) -> dict[int, int]:
    """``{product_id: quantity}`` of the well-formed lines of a stored session cart, in
    the order they were added. Session data comes back from a store: it is checked, not
    trusted."""
    lines: dict[int, int] = {}
    if not isinstance(raw, list):
        return lines
    for entry in raw:
        if not isinstance(entry, dict):
            continue
        product_id, quantity = entry.get("product_id"), entry.get("quantity")
        if type(product_id) is int and type(quantity) is int and 1 <= quantity <= MAX_LINE_QUANTITY:
            lines[product_id] = quantity
    return lines


def _visitor_lines(ctx: Context) -> dict[int, int]:
    """The visitor's session cart without the lines whose product was deleted or
    deactivated since it was added."""
    assert ctx.session_data is not None  # _cart_owner let an anonymous caller through
    lines = _well_formed(ctx.session_data.get(SESSION_CART))
    if not lines:
        return lines
    active = set(
        ctx.session.scalars(select(Product.id).where(Product.id.in_(lines), Product.is_active))
    )
    return {product_id: q for product_id, q in lines.items() if product_id in active}


def _visitor_cart(session: Session, lines: dict[int, int]) -> CartOut:
    """The response body for a visitor's (already checked) lines, at today's prices."""
    products = {
        row.id: row
        for row in session.execute(
            select(Product.id, Product.name, Product.price_cents).where(Product.id.in_(lines))
        )
    }
    items = [
        LineOut(
            product_id=product_id,
            name=products[product_id].name,
            unit_price_cents=products[product_id].price_cents,
            quantity=quantity,
            line_total_cents=products[product_id].price_cents * quantity,
        )
        for product_id, quantity in lines.items()
        if product_id in products
    ]
    return CartOut(
        items=items,
        subtotal_cents=sum(item.line_total_cents for item in items),
        item_count=sum(item.quantity for item in items),
    )


def _save_visitor_cart(ctx: Context, lines: dict[int, int]) -> CartOut:
    """Store the visitor's changed cart in the session (saved with the successful
    response; a failed request leaves the session as it was)."""
    assert ctx.session_data is not None
    if lines:
        ctx.session_data[SESSION_CART] = [
            {"product_id": product_id, "quantity": quantity}
            for product_id, quantity in lines.items()
        ]
    else:
        ctx.session_data.pop(SESSION_CART, None)
    return _visitor_cart(ctx.session, lines)


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
    """The caller's cart: the user's, or the anonymous visitor's session cart."""
    user_id = _cart_owner(ctx)
    if user_id is None:
        return _visitor_cart(ctx.session, _visitor_lines(ctx))
    return load_cart(ctx.session, user_id)


# Writes check `write:own` themselves (`_cart_owner`) instead of declaring it: a declared
# permission would turn the anonymous visitor away before the function runs.
@app.mutation("/cart/items", status_code=200, tags=["cart"])
def add_cart_item(ctx: Context, body: CartItemIn) -> CartOut:
    """Add units of a product; they join the product's line if it has one."""
    user_id = _cart_owner(ctx, writing=True)
    product = ctx.session.get(Product, body.product_id)
    if product is None or not product.is_active:
        raise NotFound(resource="product")
    if not 1 <= body.quantity <= MAX_LINE_QUANTITY:
        raise _out_of_range()
    if user_id is None:
        lines = _visitor_lines(ctx)
        quantity = lines.get(product.id, 0) + body.quantity
        if quantity > MAX_LINE_QUANTITY:
            raise _out_of_range()
        lines[product.id] = quantity
        return _save_visitor_cart(ctx, lines)
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
    return _cart_changed(ctx.session, user_id)


@app.mutation("/cart/items/{product_id}", method="PATCH", tags=["cart"])
def set_cart_item(ctx: Context, product_id: int, body: CartQuantityIn) -> CartOut:
    """Set the quantity of a line; 0 removes it."""
    user_id = _cart_owner(ctx, writing=True)
    if user_id is None:
        lines = _visitor_lines(ctx)
        if product_id not in lines:
            raise NotFound(resource="cart_item")
        if body.quantity == 0:
            del lines[product_id]
        elif 1 <= body.quantity <= MAX_LINE_QUANTITY:
            lines[product_id] = body.quantity
        else:
            raise _out_of_range()
        return _save_visitor_cart(ctx, lines)
    line = _line(ctx.session, user_id, product_id)
    if body.quantity == 0:
        ctx.session.delete(line)
    elif 1 <= body.quantity <= MAX_LINE_QUANTITY:
        line.quantity = body.quantity
    else:
        raise _out_of_range()
    ctx.session.flush()
    return _cart_changed(ctx.session, user_id)


@app.mutation("/cart/items/{product_id}", method="DELETE", status_code=200, tags=["cart"])
def remove_cart_item(ctx: Context, product_id: int) -> CartOut:
    """Remove a line."""
    user_id = _cart_owner(ctx, writing=True)
    if user_id is None:
        lines = _visitor_lines(ctx)
        if lines.pop(product_id, None) is None:
            raise NotFound(resource="cart_item")
        return _save_visitor_cart(ctx, lines)
    removed = ctx.session.execute(
        delete(CartItem).where(CartItem.user_id == user_id, CartItem.product_id == product_id)
    )
    if removed.rowcount == 0:  # type: ignore[attr-defined]
        raise NotFound(resource="cart_item")
    return _cart_changed(ctx.session, user_id)
