"""The buyer's dashboard: order totals at a glance (shop-api.md, Checkout and orders).

Every order the user placed counts as an order, refunded ones included: they were
placed. Only orders still ``paid`` count as money spent: a refund, to the card or as
credits, gives the whole total back.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import case, func, select

from bastion import Context
from examples.shop.app import app, signed_in
from examples.shop.models import Order

RECENT = timedelta(days=30)


class DashboardOut(BaseModel):
    total_orders: int
    total_spent_cents: int
    """Totals of the orders not refunded, credits spent on them included."""
    last_order_at: datetime | None
    orders_last_30_days: int


# Cached per caller for 5 minutes, and dropped by any commit that writes `shop_orders`:
# a new order or a refund shows at once. "Last 30 days" may lag the clock by the TTL.
@app.query("/me/dashboard", cache="5m", tags=["orders"])
def my_dashboard(ctx: Context) -> DashboardOut:
    """The caller's order count, spending and most recent order."""
    since = ctx.now() - RECENT
    row = ctx.session.execute(
        select(
            func.count(Order.id).label("total_orders"),
            func.coalesce(
                func.sum(case((Order.status == "paid", Order.total_cents), else_=0)), 0
            ).label("total_spent_cents"),
            func.max(Order.created_at).label("last_order_at"),
            func.count(case((Order.created_at >= since, Order.id))).label("recent"),
        ).where(Order.user_id == signed_in(ctx))
    ).one()
    return DashboardOut(
        total_orders=row.total_orders,
        total_spent_cents=row.total_spent_cents,
        last_order_at=row.last_order_at,
        orders_last_30_days=row.recent,
    )
