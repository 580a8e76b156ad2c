"""Store credits: a ledger of entries and a balance that never goes below zero.

Every movement is a ``shop_credit_entries`` row; the balance is their sum, kept in
``shop_credit_balances`` so that spending is one conditional ``UPDATE ... WHERE
balance_cents >= amount``. Two checkouts spending the same credits at once cannot
both succeed: the second one's update matches no row (on PostgreSQL it waits for the
first one's row lock, then re-reads the balance), and the ``CHECK (balance_cents >= 0)``
backs that up.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bastion import BastionError, Context, FieldError, NotFound, ValidationFailed, paginate_offset
from bastion.auth import User
from bastion.auth.audit import audit, require_reason
from bastion.console.pages import ActionField
from examples.shop.app import app, signed_in
from examples.shop.models import CreditBalance, CreditEntry, insert_into
from examples.shop.schemas import (
    CreditAdjustmentIn,
    CreditBalanceOut,
    CreditEntryOut,
    CreditsOut,
)


def credit_balance(session: Session, user_id: int) -> int:
    """The user's balance in cents (0 without any entry)."""
    return (
        session.scalar(select(CreditBalance.balance_cents).where(CreditBalance.user_id == user_id))
        or 0
    )


def add_credits(
    session: Session, user_id: int, amount_cents: int, reason: str, *, order_id: int | None = None
) -> int:
    """Write a ledger entry and move the balance by ``amount_cents``; returns the balance.

    Raises:
        BastionError: 402 ``insufficient_credits`` (with ``required`` and ``available``)
            when a negative amount would take the balance below zero; nothing is written.
    """
    if amount_cents >= 0:
        insert = insert_into(session, CreditBalance).values(
            user_id=user_id, balance_cents=amount_cents
        )
        balance = session.execute(
            insert.on_conflict_do_update(
                index_elements=["user_id"],
                set_={"balance_cents": CreditBalance.balance_cents + insert.excluded.balance_cents},
            ).returning(CreditBalance.balance_cents)
        ).scalar_one()
    else:
        spent = session.execute(
            update(CreditBalance)
            .where(
                CreditBalance.user_id == user_id,
                CreditBalance.balance_cents + amount_cents >= 0,
            )
            .values(balance_cents=CreditBalance.balance_cents + amount_cents)
            .returning(CreditBalance.balance_cents)
        ).scalar_one_or_none()
        if spent is None:
            raise BastionError(
                "insufficient_credits",
                required=-amount_cents,
                available=credit_balance(session, user_id),
            )
        balance = spent
    session.add(
        CreditEntry(user_id=user_id, amount_cents=amount_cents, reason=reason, order_id=order_id)
    )
    return int(balance)


@app.query("/me/credits", tags=["credits"])
def my_credits(
    ctx: Context,
    page: Annotated[int, Query(ge=1)] = 1,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> CreditsOut:
    """The caller's balance and ledger, newest entries first."""
    user_id = signed_in(ctx)
    entries = paginate_offset(
        ctx.session,
        select(CreditEntry)
        .where(CreditEntry.user_id == user_id)
        .order_by(CreditEntry.created_at.desc(), CreditEntry.id.desc()),
        page=page,
        limit=limit,
    )
    return CreditsOut.model_validate(
        {
            "balance_cents": credit_balance(ctx.session, user_id),
            "entries": {
                "data": [
                    CreditEntryOut.model_validate(e, from_attributes=True) for e in entries.data
                ],
                "pagination": entries.pagination,
            },
        }
    )


# The console lists users for every app; credits are the shop's, so the shop offers
# the form, and the console posts it to the endpoint below.
app.console_user_action(
    "Adjust credits",
    "/admin/users/{id}/credits",
    fields=[ActionField("amount_cents", "Amount in cents", "integer")],
)


@app.mutation(
    "/admin/users/{user_id}/credits", status_code=200, permissions=["write:all"], tags=["admin"]
)
def adjust_credits(ctx: Context, user_id: int, body: CreditAdjustmentIn) -> CreditBalanceOut:
    """Grant (positive) or take (negative) credits; 409 if the balance would go negative."""
    reason = require_reason(body.reason)
    if body.amount_cents == 0:
        raise ValidationFailed(errors=[FieldError("amount_cents", "not_zero")])
    if ctx.session.get(User, user_id) is None:
        raise NotFound(resource="user")
    try:
        balance = add_credits(ctx.session, user_id, body.amount_cents, reason)
    except BastionError as error:
        # The same code as at checkout, but here it is a conflict with the account's
        # state, not a payment problem: 409 (shop-api.md, Administration).
        raise BastionError(error.error_code, status=409, **error.params) from None
    audit(
        ctx.session,
        actor_id=ctx.user.id if ctx.user else None,
        action="credits.adjust",
        target_type="user",
        target_id=user_id,
        reason=reason,
        request_id=ctx.request_id,
        amount_cents=body.amount_cents,
        balance_cents=balance,
    )
    return CreditBalanceOut(balance_cents=balance)
