"""Orders: the buyer's list and detail, and refunds by an admin (shop-api.md, Checkout and
orders; Administration). Orders are placed by the checkout workflow (``checkout.py``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import Query
from sqlalchemy import select, update

from bastion import (
    BastionError,
    Context,
    NotAuthenticated,
    NotFound,
    OffsetPage,
    paginate_offset,
)
from bastion.auth.audit import audit, require_reason
from bastion.webhooks import publish
from examples.shop import ledger, payments
from examples.shop.app import app, signed_in
from examples.shop.models import Order
from examples.shop.schemas import AdminOrderOut, LineOut, OrderOut, RefundIn, ShippingOut


def order_out(order: Order) -> OrderOut:
    """The contract's order body."""
    return OrderOut(
        id=order.id,
        status=order.status,
        items=[
            LineOut(
                product_id=item.product_id,
                name=item.name,
                unit_price_cents=item.unit_price_cents,
                quantity=item.quantity,
                line_total_cents=item.line_total_cents,
            )
            for item in order.items
        ],
        subtotal_cents=order.subtotal_cents,
        shipping=ShippingOut(
            method=order.shipping_method,
            cost_cents=order.shipping_cents,
            estimated_days=order.shipping_estimated_days,
            provider=order.shipping_provider,
        ),
        credits_applied_cents=order.credits_applied_cents,
        total_cents=order.total_cents,
        charged_cents=order.charged_cents,
        payment_id=order.payment_id,
        created_at=order.created_at,
    )


@app.query("/orders", response=OffsetPage[OrderOut], tags=["orders"])
def list_orders(
    ctx: Context,
    page: Annotated[int, Query(ge=1)] = 1,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, object]:
    """The caller's orders, newest first."""
    result = paginate_offset(
        ctx.session,
        select(Order)
        .where(Order.user_id == signed_in(ctx))
        .order_by(Order.created_at.desc(), Order.id.desc()),
        page=page,
        limit=limit,
    )
    return {"data": [order_out(order) for order in result.data], "pagination": result.pagination}


# The primary, with read replicas configured: a buyer fetches the order right after the
# checkout that created it, and a replica a moment behind would answer 404.
@app.query("/orders/{order_id}", tags=["orders"], primary=True)
def get_order(ctx: Context, order_id: int) -> OrderOut:
    """One order, for its buyer or an admin; anyone else gets 404, as if it did not exist."""
    if ctx.user is None:
        raise NotAuthenticated()
    order = ctx.session.get(Order, order_id)
    if order is None or not (ctx.user.has("read:all") or str(order.user_id) == ctx.user.id):
        raise NotFound(resource="order")
    return order_out(order)


@app.query(
    "/admin/orders", response=OffsetPage[AdminOrderOut], permissions=["write:all"], tags=["admin"]
)
def admin_list_orders(
    ctx: Context,
    status: Literal["paid", "refunded"] | None = None,
    user_id: Annotated[int | None, Query(ge=1)] = None,
    page: Annotated[int, Query(ge=1)] = 1,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, object]:
    """Every buyer's orders, newest first, by status and buyer."""
    statement = select(Order).order_by(Order.created_at.desc(), Order.id.desc())
    if status is not None:
        statement = statement.where(Order.status == status)
    if user_id is not None:
        statement = statement.where(Order.user_id == user_id)
    result = paginate_offset(ctx.session, statement, page=page, limit=limit)
    orders = [
        AdminOrderOut(
            **order_out(order).model_dump(),
            user_id=order.user_id,
            refunded_at=order.refunded_at,
            refunded_to=order.refunded_to,
        )
        for order in result.data
    ]
    return {"data": orders, "pagination": result.pagination}


@app.mutation(
    "/admin/orders/{order_id}/refund", status_code=200, permissions=["write:all"], tags=["admin"]
)
def refund_order(ctx: Context, order_id: int, body: RefundIn) -> OrderOut:
    """Refund a paid order (409 if it was refunded already), to the card or as credits.

    ``card``: the charge goes back to the card (by a job, enqueued in this transaction,
    so the refund is made if and only if the order is marked refunded) and spent
    credits go back to the credits. ``credits``: the whole total becomes credits.
    """
    reason = require_reason(body.reason)
    order = ctx.session.get(Order, order_id)
    if order is None:
        raise NotFound(resource="order")
    # The status changes only if it is still "paid": of two admins refunding at once,
    # one wins and the other gets 409, so nothing is refunded twice.
    claimed = ctx.session.execute(
        update(Order)
        .where(Order.id == order_id, Order.status == "paid")
        .values(status="refunded", refunded_at=datetime.now(UTC), refunded_to=body.to)
    )
    if claimed.rowcount == 0:  # type: ignore[attr-defined]
        raise BastionError("already_refunded")
    ctx.session.refresh(order)
    if body.to == "card":
        to_credits = order.credits_applied_cents
        if order.charged_cents > 0:
            payments.refund_order_payment.enqueue(ctx, order_id=order_id)
    else:
        to_credits = order.total_cents
    if to_credits > 0:
        ledger.add_credits(
            ctx.session, order.user_id, to_credits, f"refund of order {order_id}", order_id=order_id
        )
    audit(
        ctx.session,
        actor_id=ctx.user.id if ctx.user else None,
        action="order.refund",
        target_type="order",
        target_id=order_id,
        reason=reason,
        request_id=ctx.request_id,
        to=body.to,
        card_cents=order.charged_cents if body.to == "card" else 0,
        credits_cents=to_credits,
    )
    refunded = order_out(order)
    publish(ctx, "order.refunded", refunded)
    return refunded
