"""Checkout: ``POST /checkout`` runs the ``checkout`` workflow inline (shop-api.md,
Checkout and orders).

The workflow has three steps, each checkpointed in the database:

1. ``prepare_checkout`` (a ``def`` step: exactly once) reads the cart, checks stock,
   and prices the order: subtotal, shipping, the credits to spend and the amount to
   charge. Nothing is written, so its errors (``cart_empty``,
   ``insufficient_inventory``, ``insufficient_credits``) leave nothing to undo.
2. ``charge_card`` (an ``async def`` step: at least once) charges the card at the
   gateway under the step's idempotency key, so a repeat never charges twice. It is
   skipped when credits pay everything. Its compensation ``refund_card`` refunds the
   charge if the last step fails.
3. ``record_order`` (a ``def`` step) does everything else in one transaction: takes
   the stock (``UPDATE ... WHERE stock >= quantity``: a product sold out meanwhile
   fails the step, and the charge is refunded), writes the order and its items,
   spends the credits, takes the items out of the cart, enqueues the confirmation
   email and publishes ``order.created``.

The run's id comes from the user and the request's ``Idempotency-Key``. A request the
idempotency layer lets through again (the first one failed with a 5xx, or its process
died) finds that run: a finished one returns its order, an unfinished one is resumed
where it stopped; only a run that failed starts a fresh attempt (``...:2``), with new
keys at the gateway. Money a failed attempt may have taken is never lost track of: an
unanswered charge or a failed refund becomes a reconciliation (``payments.py``).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from typing import Any

import anyio.to_thread
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from bastion import BastionError, Context, FieldError, Retry, Runtime, ValidationFailed
from bastion.auth import User
from bastion.webhooks import publish
from bastion.workflows import WorkflowRow, WorkflowRun
from examples.shop import cart, ledger, live, orders, payments
from examples.shop.app import app, shop_settings, signed_in
from examples.shop.models import CartItem, Order, OrderItem, Product
from examples.shop.schemas import CheckoutIn, OrderOut, PaymentMethod, ShippingMethod
from examples.shop.shipping import quote_shipping

#: ``runtime.http`` already retries each gateway call; a step retry on top would only
#: multiply the calls to a gateway that is down.
CHARGE_ONCE = Retry(max_attempts=1)


def prepare_checkout(
    ctx: Context,
    user_id: int,
    shipping_method: ShippingMethod,
    zip_code: str,
    payment_method: PaymentMethod,
    use_credits: bool,
) -> dict[str, Any]:
    """Price the cart: items, subtotal, shipping, credits to spend, amount to charge."""
    session = ctx.session
    rows = session.execute(
        select(
            CartItem.product_id,
            CartItem.quantity,
            Product.name,
            Product.price_cents,
            Product.stock,
            Product.weight_grams,
            Product.is_active,
        )
        .join(Product, Product.id == CartItem.product_id)
        .where(CartItem.user_id == user_id)
        .order_by(CartItem.id)
    ).all()
    if not rows:
        raise BastionError("cart_empty")
    for row in rows:
        available = row.stock if row.is_active else 0
        if available < row.quantity:
            raise BastionError(
                "insufficient_inventory",
                product=row.name,
                available=available,
                requested=row.quantity,
            )
    items = [
        {
            "product_id": row.product_id,
            "name": row.name,
            "unit_price_cents": row.price_cents,
            "quantity": row.quantity,
            "line_total_cents": row.price_cents * row.quantity,
        }
        for row in rows
    ]
    subtotal = sum(item["line_total_cents"] for item in items)
    shipping = quote_shipping(
        shipping_method,
        weight_grams=sum(row.weight_grams * row.quantity for row in rows),
        zip_code=zip_code,
        warehouse_zip=shop_settings(ctx.settings).warehouse_zip,
    )
    total = subtotal + shipping.cost_cents
    balance = ledger.credit_balance(session, user_id)
    if payment_method == "credits":
        if balance < total:
            raise BastionError("insufficient_credits", required=total, available=balance)
        credits = total
    else:
        credits = min(balance, total) if use_credits else 0
    return {
        "items": items,
        "subtotal_cents": subtotal,
        "shipping": asdict(shipping),
        "total_cents": total,
        "credits_applied_cents": credits,
        "charge_cents": total - credits,
    }


async def charge_card(
    ctx: Context, workflow_id: str, amount_cents: int, token: str
) -> dict[str, Any]:
    """Charge the card; an unanswered charge that may have gone through becomes a
    reconciliation (settled in the background) before the error reaches the client."""
    key = ctx.idempotency_key
    assert key is not None  # set for every workflow step
    try:
        charge = await payments.create_charge(
            ctx.services, amount_cents=amount_cents, token=token, key=key
        )
    except payments.GatewayFailed as failed:
        if failed.reached:
            await payments.open_reconciliation_now(
                ctx.services,
                reason="charge_unanswered",
                amount_cents=amount_cents,
                payment_key=key,
                payment_token=token,
                workflow_id=workflow_id,
                settle=True,
            )
        raise failed.error from None
    except payments.GatewayRefused as refused:
        # The gateway did nothing, but the shop sent what it should not have: a bug.
        raise BastionError("internal_error") from refused
    return {"id": charge.id, "amount_cents": charge.amount_cents, "workflow_id": workflow_id}


async def refund_card(ctx: Context, payment: dict[str, Any]) -> dict[str, bool]:
    """Compensation of ``charge_card``: refund the charge. If the gateway cannot do it
    now, the charge becomes a reconciliation that a job keeps refunding, so the
    compensation itself never fails and the client's error is answered at once."""
    key = ctx.idempotency_key
    assert key is not None
    try:
        await payments.refund_charge(ctx.services, charge_id=payment["id"], key=key)
    except (payments.GatewayFailed, payments.GatewayRefused):
        await payments.open_reconciliation_now(
            ctx.services,
            reason="refund_failed",
            amount_cents=payment["amount_cents"],
            charge_id=payment["id"],
            payment_key=key,
            workflow_id=payment["workflow_id"],
            settle=True,
        )
        return {"refunded": False}
    return {"refunded": True}


def record_order(
    ctx: Context,
    user_id: int,
    workflow_id: str,
    quote: dict[str, Any],
    payment: dict[str, Any] | None,
    address: dict[str, str],
    locale: str,
) -> dict[str, Any]:
    """Take the stock, write the order, spend the credits, empty the cart, enqueue the
    email and publish ``order.created``: all of it or (on any error) none of it."""
    session = ctx.session
    for item in quote["items"]:
        _take_stock(session, item)
    shipping = quote["shipping"]
    order = Order(
        user_id=user_id,
        status="paid",
        subtotal_cents=quote["subtotal_cents"],
        shipping_cents=shipping["cost_cents"],
        credits_applied_cents=quote["credits_applied_cents"],
        total_cents=quote["total_cents"],
        charged_cents=quote["charge_cents"],
        shipping_method=shipping["method"],
        shipping_estimated_days=shipping["estimated_days"],
        shipping_provider=shipping["provider"],
        shipping_address=address,
        payment_id=payment["id"] if payment else None,
        workflow_id=workflow_id,
        items=[OrderItem(**item) for item in quote["items"]],
    )
    session.add(order)
    session.flush()
    if order.credits_applied_cents:
        ledger.add_credits(
            session, user_id, -order.credits_applied_cents, f"order {order.id}", order_id=order.id
        )
    _take_from_cart(session, user_id, quote["items"])
    user = session.get(User, user_id)
    assert user is not None
    assert app.send_email is not None  # the shop declares its mail templates
    app.send_email.enqueue(
        ctx,
        template="order_confirmation",
        to=[user.email],
        locale=locale,
        context={
            "name": user.name or user.email,
            "order_id": order.id,
            # The template multiplies and formats amounts in major units; job
            # arguments are JSON, where floats are exact enough for display.
            "items": [
                {"name": i.name, "quantity": i.quantity, "unit_price": i.unit_price_cents / 100}
                for i in order.items
            ],
            "total": order.total_cents / 100,
            "currency": "USD",
        },
    )
    placed = orders.order_out(order)
    publish(ctx, "order.created", placed)
    return placed.model_dump(mode="json")


def _take_stock(session: Session, item: dict[str, Any]) -> None:
    taken = session.execute(
        update(Product)
        .where(
            Product.id == item["product_id"],
            Product.is_active.is_(True),
            Product.stock >= item["quantity"],
        )
        .values(stock=Product.stock - item["quantity"])
    )
    if taken.rowcount == 0:  # type: ignore[attr-defined]
        product = session.get(Product, item["product_id"])
        available = product.stock if product is not None and product.is_active else 0
        raise BastionError(
            "insufficient_inventory",
            product=item["name"],
            available=available,
            requested=item["quantity"],
        )


def _take_from_cart(session: Session, user_id: int, items: list[dict[str, Any]]) -> None:
    # Only what was bought leaves the cart: units added from another tab while the
    # checkout ran stay there.
    for item in items:
        line = (CartItem.user_id == user_id, CartItem.product_id == item["product_id"])
        session.execute(delete(CartItem).where(*line, CartItem.quantity <= item["quantity"]))
        session.execute(
            update(CartItem)
            .where(*line, CartItem.quantity > item["quantity"])
            .values(quantity=CartItem.quantity - item["quantity"])
        )
    live.cart_updated(session, user_id, cart.load_cart(session, user_id))


@app.workflow(name="checkout", step_retry=Retry(max_attempts=3, base_s=0.2, max_delay_s=2))
async def checkout_workflow(
    wf: WorkflowRun,
    user_id: int,
    address: dict[str, str],
    shipping_method: ShippingMethod,
    payment_method: PaymentMethod,
    payment_token: str | None,
    use_credits: bool,
    locale: str,
) -> dict[str, Any]:
    """Price, charge, record (see the module's docstring)."""
    quote = await wf.step(
        prepare_checkout,
        user_id=user_id,
        shipping_method=shipping_method,
        zip_code=address["zip_code"],
        payment_method=payment_method,
        use_credits=use_credits,
    )
    payment = None
    if quote["charge_cents"] > 0:
        assert payment_token is not None  # the endpoint requires one for card payments
        payment = await wf.step(
            charge_card,
            compensate=refund_card,
            retry=CHARGE_ONCE,
            workflow_id=wf.id,
            amount_cents=quote["charge_cents"],
            token=payment_token,
        )
    order: dict[str, Any] = await wf.step(
        record_order,
        user_id=user_id,
        workflow_id=wf.id,
        quote=quote,
        payment=payment,
        address=address,
        locale=locale,
    )
    return order


def checkout_run_id(runtime: Runtime, user_id: int, idempotency_key: str) -> str:
    """The workflow id for this user and key: the latest attempt's, unless it failed.

    The key is hashed: it may be 255 characters, and ids are at most 200.
    """
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    prefix = f"checkout:{user_id}:{digest}:"
    with runtime.database.read_transaction() as session:
        runs = session.execute(
            select(WorkflowRow.id, WorkflowRow.status).where(
                WorkflowRow.id.startswith(prefix, autoescape=True)
            )
        ).all()
    if not runs:
        return f"{prefix}1"
    attempt, status = max((int(run.id.rsplit(":", 1)[1]), run.status) for run in runs)
    if status in ("failed", "compensated"):
        return f"{prefix}{attempt + 1}"
    return f"{prefix}{attempt}"


def _check_payment_fields(body: CheckoutIn) -> None:
    errors = []
    if body.payment_method == "card" and body.payment_token is None:
        errors.append(FieldError("payment_token", "payment_token_required"))
    if body.payment_method == "credits":
        errors += [
            FieldError(name, "card_only")
            for name in ("payment_token", "use_credits")
            if name in body.model_fields_set
        ]
    if errors:
        raise ValidationFailed(errors=errors)


@app.action(
    "/checkout",
    status_code=201,
    response=OrderOut,
    permissions=["write:own"],
    require_idempotency_key=True,
    tags=["checkout"],
)
async def checkout(ctx: Context, body: CheckoutIn) -> OrderOut:
    """Buy the cart: charge the card (or spend credits) and place the order.

    Requires an ``Idempotency-Key``: a retry with the same key never charges twice.
    """
    user_id = signed_in(ctx)
    _check_payment_fields(body)
    if ctx.idempotency_key is None:
        raise BastionError("idempotency_key_required")
    run_id = await anyio.to_thread.run_sync(
        checkout_run_id, ctx.services, user_id, ctx.idempotency_key
    )
    result = await checkout_workflow.run(
        ctx,
        id=run_id,
        user_id=user_id,
        address=body.shipping_address.model_dump(),
        shipping_method=body.shipping_method,
        payment_method=body.payment_method,
        payment_token=body.payment_token,
        use_credits=body.use_credits,
        locale=ctx.locale,
    )
    return OrderOut.model_validate(result)
