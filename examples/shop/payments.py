"""Payments: the gateway client, reconciliations, and the gateway's webhooks.

Every call goes through ``runtime.http`` as the dependency ``"payments"``: time limits,
retries (charges and refunds carry an ``Idempotency-Key``, so repeating them is safe)
and a circuit breaker. Its failures are turned into the shop's errors:

* the gateway answered 402: 402 ``payment_declined``;
* the gateway failed, or its breaker is open: 503 ``payment_unavailable`` with
  ``Retry-After``;
* the last attempt timed out: 504 ``upstream_timeout``.

A failed call may still have taken the money: a charge can be made and its answer
lost. Whenever that is possible (some attempt got as far as sending its request), the
caller writes a :class:`~examples.shop.models.Reconciliation`, and
:func:`settle_reconciliation` settles it with the gateway in the background: it
repeats the unanswered call under the same idempotency key, which returns the charge
if there was one (the gateway has no other way to look a charge up by key), and
refunds it. Each record logs ``payment_reconciliation_needed`` at error level, the
hook ops alerts hang on; a settled one logs ``payment_reconciliation_resolved``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread
import httpx
from pydantic import BaseModel, ConfigDict
from sqlalchemy import exc as sa_exc
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bastion import BastionError, Context, Retry, RetryLater, Runtime
from bastion.errors.exceptions import IntegrationError, UpstreamTimeout
from bastion.observability.logs import get_logger
from examples.shop.app import app, shop_settings
from examples.shop.models import Order, Reconciliation

DEPENDENCY = "payments"
CURRENCY = "usd"


def _log() -> Any:
    # Looked up per use, not cached at import: tests capture these lines.
    return get_logger("examples.shop.payments")


@dataclass(frozen=True, slots=True)
class Charge:
    id: str
    amount_cents: int
    refunded_cents: int = 0


class GatewayFailed(Exception):
    """A gateway call ended without a usable answer.

    Attributes:
        error: What the client should see (503 ``payment_unavailable`` or 504
            ``upstream_timeout``).
        reached: Whether some attempt got as far as sending its request, so that the
            gateway may have acted on it. ``False`` only when no attempt did (the
            breaker refused the call, or no connection could be opened).
    """

    def __init__(self, error: BastionError, *, reached: bool) -> None:
        super().__init__(error.error_code)
        self.error = error
        self.reached = reached


class GatewayRefused(Exception):
    """The gateway answered with an error that retrying cannot change (a 4xx other than
    402): it did nothing, and the shop sent something it should not have."""

    def __init__(self, status: int, code: str) -> None:
        super().__init__(f"the gateway answered {status} {code}")
        self.status = status
        self.code = code


class _SendTracker:
    """An httpx ``trace`` hook noting whether any attempt started sending its request.

    Until the request's headers start going out, the gateway cannot have seen it:
    a breaker's refusal and a refused connection are certain "nothing happened"s,
    anything after that is not.
    """

    def __init__(self) -> None:
        self.sent = False

    async def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event.endswith("send_request_headers.started"):
            self.sent = True


async def _call(
    services: Runtime, method: str, path: str, *, key: str | None = None, json: Any = None
) -> httpx.Response:
    settings = shop_settings(services.settings)
    tracker = _SendTracker()
    headers = {"Idempotency-Key": key} if key else {}
    try:
        response = await services.http.request(
            DEPENDENCY,
            method,
            settings.gateway_url.rstrip("/") + path,
            json=json,
            headers=headers,
            extensions={"trace": tracker},
        )
    except IntegrationError as error:
        raise GatewayFailed(
            _client_error(error, settings.payment_retry_after_s), reached=tracker.sent
        ) from error
    if response.status_code in (408, 429):
        # Still busy after the retries: as good as down, for the client.
        raise GatewayFailed(
            _client_error(None, settings.payment_retry_after_s), reached=tracker.sent
        )
    return response


def _client_error(error: IntegrationError | None, retry_after_s: int) -> BastionError:
    if isinstance(error, UpstreamTimeout):
        return error
    # An open breaker says when it lets a trial call through; otherwise, the setting.
    retry_after = (error.headers.get("Retry-After") if error else None) or str(retry_after_s)
    return BastionError("payment_unavailable", status=503, headers={"Retry-After": retry_after})


def _refused(response: httpx.Response) -> GatewayRefused:
    try:
        code = str(response.json().get("error", ""))
    except ValueError:
        code = ""
    return GatewayRefused(response.status_code, code or "unknown")


def _charge_of(body: dict[str, Any]) -> Charge:
    return Charge(
        id=str(body["id"]),
        amount_cents=int(body["amount_cents"]),
        refunded_cents=int(body.get("refunded_cents", 0)),
    )


async def create_charge(services: Runtime, *, amount_cents: int, token: str, key: str) -> Charge:
    """Charge a card once per ``key``: a repeat with the same key and amount returns the
    first charge instead of making another.

    Raises:
        BastionError: 402 ``payment_declined``.
        GatewayFailed: no answer (see its ``reached``).
        GatewayRefused: any other refusal.
    """
    response = await _call(
        services,
        "POST",
        "/charges",
        key=key,
        json={"amount_cents": amount_cents, "currency": CURRENCY, "token": token},
    )
    if response.status_code == 402:
        # Declared 402 in the shop's messages: the workflow sees a client error and does
        # not retry it.
        raise BastionError("payment_declined")
    if response.status_code != 201:
        raise _refused(response)
    return _charge_of(response.json())


async def refund_charge(services: Runtime, *, charge_id: str, key: str) -> bool:
    """Refund what is left of a charge, once per ``key``; ``False`` when nothing was
    left to refund (it was refunded in full already).

    Raises:
        GatewayFailed: no answer.
        GatewayRefused: the gateway does not know the charge, or refused otherwise.
    """
    response = await _call(services, "POST", f"/charges/{charge_id}/refunds", key=key)
    if response.status_code == 201:
        return True
    refused = _refused(response)
    if refused.code == "refund_exceeds_charge":
        return False
    raise refused


async def fetch_charge(services: Runtime, charge_id: str) -> Charge:
    """A charge as the gateway has it now (with what was refunded)."""
    response = await _call(services, "GET", f"/charges/{charge_id}")
    if response.status_code != 200:
        raise _refused(response)
    return _charge_of(response.json())


# -- reconciliations --------------------------------------------------------------------


def open_reconciliation(
    session: Session,
    *,
    reason: str,
    amount_cents: int,
    charge_id: str | None = None,
    payment_key: str | None = None,
    payment_token: str | None = None,
    workflow_id: str | None = None,
    order_id: int | None = None,
    settle: bool,
) -> Reconciliation:
    """Record money the shop cannot account for, in ``session``'s transaction.

    One record per ``payment_key`` (and per charge for ``charge_without_order``):
    writing it again returns the first. With ``settle``, :func:`settle_reconciliation`
    is enqueued in the same transaction to settle it with the gateway.
    """
    existing = None
    if payment_key is not None:
        existing = session.scalar(
            select(Reconciliation).where(Reconciliation.payment_key == payment_key)
        )
    elif charge_id is not None:
        existing = session.scalar(
            select(Reconciliation).where(
                Reconciliation.charge_id == charge_id, Reconciliation.reason == reason
            )
        )
    if existing is not None:
        return existing
    record = Reconciliation(
        reason=reason,
        amount_cents=amount_cents,
        charge_id=charge_id,
        payment_key=payment_key,
        payment_token=payment_token,
        workflow_id=workflow_id,
        order_id=order_id,
    )
    session.add(record)
    session.flush()
    if settle:
        settle_reconciliation.enqueue(session, reconciliation_id=record.id)
    _log().error(
        "payment_reconciliation_needed",
        reconciliation_id=record.id,
        reason=reason,
        charge_id=charge_id,
        amount_cents=amount_cents,
        workflow_id=workflow_id,
        order_id=order_id,
        automatic=settle,
    )
    return record


async def open_reconciliation_now(services: Runtime, **fields: Any) -> None:
    """:func:`open_reconciliation` in a transaction of its own (from actions and jobs)."""

    def write() -> None:
        try:
            with services.database.transaction() as session:
                open_reconciliation(session, **fields)
        except sa_exc.IntegrityError:
            pass  # the same record, written at the same moment by another runner

    await anyio.to_thread.run_sync(write)


@app.job(queue="payments")
async def settle_reconciliation(ctx: Context, reconciliation_id: int) -> str:
    """Settle a reconciliation with the gateway: refund the charge it is about.

    Tries again every ``[shop] reconcile_retry_s`` while the gateway fails, up to
    ``reconcile_max_attempts`` times; then the record waits for a person.
    """
    runtime: Runtime = ctx.services
    settings = shop_settings(ctx.settings)
    record = await anyio.to_thread.run_sync(_load_reconciliation, runtime, reconciliation_id)
    if record.resolved_at is not None:
        return "resolved"
    charge_id = record.charge_id
    try:
        if record.reason == "charge_unanswered":
            assert record.payment_key is not None
            assert record.payment_token is not None
            try:
                charge = await create_charge(
                    runtime,
                    amount_cents=record.amount_cents,
                    token=record.payment_token,
                    key=record.payment_key,
                )
            except BastionError:
                resolution = "the charge was declined: nothing was taken"
            else:
                charge_id = charge.id
                await refund_charge(
                    runtime, charge_id=charge.id, key=f"{record.payment_key}:refund"
                )
                resolution = f"charge {charge.id} refunded"
        elif record.reason == "refund_failed":
            assert record.charge_id is not None
            assert record.payment_key is not None
            await refund_charge(runtime, charge_id=record.charge_id, key=record.payment_key)
            resolution = f"charge {record.charge_id} refunded"
        else:
            return "left to a person"
    except GatewayFailed:
        attempts = await anyio.to_thread.run_sync(_count_attempt, runtime, reconciliation_id)
        if attempts < settings.reconcile_max_attempts:
            raise RetryLater(settings.reconcile_retry_s) from None
        _log().error("payment_reconciliation_abandoned", reconciliation_id=reconciliation_id)
        return "abandoned"
    except GatewayRefused as refused:
        _log().error(
            "payment_reconciliation_abandoned",
            reconciliation_id=reconciliation_id,
            gateway_status=refused.status,
            gateway_error=refused.code,
        )
        return "abandoned"
    await anyio.to_thread.run_sync(_resolve, runtime, reconciliation_id, charge_id, resolution)
    _log().info(
        "payment_reconciliation_resolved",
        reconciliation_id=reconciliation_id,
        resolution=resolution,
    )
    return "resolved"


def _load_reconciliation(runtime: Runtime, reconciliation_id: int) -> Reconciliation:
    with runtime.database.read_transaction() as session:
        record = session.get(Reconciliation, reconciliation_id)
        if record is None:
            raise LookupError(f"no reconciliation {reconciliation_id}")
        session.expunge(record)
        return record


def _count_attempt(runtime: Runtime, reconciliation_id: int) -> int:
    with runtime.database.transaction() as session:
        attempts = session.execute(
            update(Reconciliation)
            .where(Reconciliation.id == reconciliation_id)
            .values(attempts=Reconciliation.attempts + 1)
            .returning(Reconciliation.attempts)
        ).scalar_one()
        return int(attempts)


def _resolve(
    runtime: Runtime, reconciliation_id: int, charge_id: str | None, resolution: str
) -> None:
    with runtime.database.transaction() as session:
        session.execute(
            update(Reconciliation)
            .where(Reconciliation.id == reconciliation_id, Reconciliation.resolved_at.is_(None))
            .values(charge_id=charge_id, resolution=resolution, resolved_at=datetime.now(UTC))
        )


# -- the gateway's webhooks ------------------------------------------------------------


class GatewayCharge(BaseModel):
    """A charge as the gateway's events carry it (other fields ignored)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    amount_cents: int
    refunded_cents: int = 0


class GatewayEvent(BaseModel):
    """``charge.succeeded`` or ``charge.refunded``, signed with ``Gateway-Signature``."""

    model_config = ConfigDict(extra="ignore")

    id: str
    type: str
    created: int
    """Unix seconds."""
    data: GatewayCharge


@app.job(queue="payments")
async def on_payment_event(ctx: Context, event: GatewayEvent) -> str:
    """Handle one gateway event (each event id once; see ``webhook_receiver`` below).

    ``charge.succeeded`` confirms the order that holds the charge. A charge no order
    holds is normal for a moment (the gateway reports it before the checkout records
    its order) and after a failed checkout refunded it; one still unrefunded after
    ``[shop] webhook_grace_s`` is money without an order: a reconciliation for a person.
    ``charge.refunded`` settles the open reconciliations of a charge refunded in full.
    """
    runtime: Runtime = ctx.services
    charge = event.data
    if event.type == "charge.refunded":
        if charge.refunded_cents < charge.amount_cents:
            return "partly refunded"
        resolved = await anyio.to_thread.run_sync(
            _resolve_charge, runtime, charge.id, f"refunded at the gateway ({event.id})"
        )
        return f"resolved {resolved}"
    if event.type != "charge.succeeded":
        return "ignored"
    if await anyio.to_thread.run_sync(_confirm_order, runtime, charge.id):
        return "confirmed"
    wait_s = event.created + shop_settings(ctx.settings).webhook_grace_s - time.time()
    if wait_s > 0:
        raise RetryLater(wait_s)
    try:
        current = await fetch_charge(runtime, charge.id)
    except GatewayFailed as failed:
        raise failed.error from None  # the job is retried with backoff
    if current.refunded_cents >= current.amount_cents:
        return "refunded"
    # The checkout may have recorded its order while we asked the gateway.
    if await anyio.to_thread.run_sync(_confirm_order, runtime, charge.id):
        return "confirmed"
    await open_reconciliation_now(
        runtime,
        reason="charge_without_order",
        amount_cents=current.amount_cents - current.refunded_cents,
        charge_id=charge.id,
        settle=False,
    )
    return "reconciliation"


def _confirm_order(runtime: Runtime, charge_id: str) -> bool:
    with runtime.database.transaction() as session:
        order = session.scalar(select(Order).where(Order.payment_id == charge_id))
        if order is None:
            return False
        if order.payment_confirmed_at is None:
            order.payment_confirmed_at = datetime.now(UTC)
        return True


def _resolve_charge(runtime: Runtime, charge_id: str, resolution: str) -> int:
    with runtime.database.transaction() as session:
        result = session.execute(
            update(Reconciliation)
            .where(Reconciliation.charge_id == charge_id, Reconciliation.resolved_at.is_(None))
            .values(resolution=resolution, resolved_at=datetime.now(UTC))
        )
        return int(result.rowcount)  # type: ignore[attr-defined]


app.webhook_receiver(
    "/webhooks/payments",
    handler=on_payment_event,
    secret_setting="shop.gateway_webhook_secret",
    header="Gateway-Signature",
)


@app.job(queue="payments", retry=Retry(max_attempts=10, base_s=10, max_delay_s=1800))
async def refund_order_payment(ctx: Context, order_id: int) -> str:
    """Refund a refunded order's card charge (enqueued with the refund's transaction).

    Retried with backoff for hours while the gateway fails; when the last attempt
    fails too, or the gateway refuses, the charge becomes a ``refund_failed``
    reconciliation.
    """
    runtime: Runtime = ctx.services
    order = await anyio.to_thread.run_sync(_load_order, runtime, order_id)
    assert order.payment_id is not None
    key = f"order-{order_id}:refund"
    try:
        await refund_charge(runtime, charge_id=order.payment_id, key=key)
    except (GatewayFailed, GatewayRefused) as error:
        last = ctx.job is None or ctx.job.attempt >= ctx.job.max_attempts
        if isinstance(error, GatewayFailed) and not last:
            raise error.error from None
        await open_reconciliation_now(
            runtime,
            reason="refund_failed",
            amount_cents=order.charged_cents,
            charge_id=order.payment_id,
            payment_key=key,
            order_id=order_id,
            settle=True,
        )
        return "reconciliation"
    return "refunded"


def _load_order(runtime: Runtime, order_id: int) -> Order:
    with runtime.database.read_transaction() as session:
        order = session.get(Order, order_id)
        if order is None:
            raise LookupError(f"no order {order_id}")
        session.expunge(order)
        return order
