"""A small app for webhook tests: a payments receiver, an orders mutation that publishes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, SecretStr
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bastion import App, Context, Retry
from bastion.webhooks import publish

#: The secrets the payments receiver accepts: the current one and the one being retired.
NEW_SECRET = "whsec_new"
OLD_SECRET = "whsec_old"
#: The second receiver's, given by a function instead of a setting.
GITHUB_SECRET = "whsec_github"


class Base(DeclarativeBase):
    pass


class Payment(Base):
    """One row per processed event; the unique key makes a repeated effect an error."""

    __tablename__ = "payments"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(100))


class HookSettings(BaseModel):
    """The ``[hooks]`` section: where the receiver's secrets come from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    payment_secrets: list[SecretStr] = [SecretStr(NEW_SECRET), SecretStr(OLD_SECRET)]


app = App("webhooktests", metadata=Base.metadata, config_sections={"hooks": HookSettings})
app.use_auth()
app.use_webhooks(retry=Retry(base_s=0.01, factor=2.0, max_delay_s=0.05, jitter=0))


@app.job()
def record_payment(ctx: Context, event: dict[str, Any]) -> str:
    """Process a payment event: one row, written with the job's completion."""
    ctx.session.add(Payment(event_id=event["id"], kind=event["type"]))
    return str(event["id"])


@app.job()
def record_push(ctx: Context, event: dict[str, Any], note: str = "") -> None:
    ctx.session.add(Payment(event_id=str(event["delivery"]), kind="push"))


app.webhook_receiver(
    "/webhooks/payments",
    handler=record_payment,
    secret_setting="hooks.payment_secrets",
    header="Gateway-Signature",
)
app.webhook_receiver(
    "/webhooks/github",
    handler=record_push,
    secret=lambda settings: GITHUB_SECRET,
    event_id=lambda payload: payload["delivery"],
    source="github",
    tolerance_s=60,
)


class Charge(BaseModel):
    id: str
    type: Literal["charge.succeeded", "charge.refunded"]


@app.job()
def record_charge(ctx: Context, event: Charge) -> None:
    """A typed handler: the payload is validated when the request arrives."""
    ctx.session.add(Payment(event_id=event.id, kind=event.type))


app.webhook_receiver("/webhooks/typed", handler=record_charge, secret=lambda settings: NEW_SECRET)


class OrderIn(BaseModel):
    total_cents: int
    fail: bool = False


@app.mutation("/orders")
def create_order(ctx: Context, body: OrderIn) -> dict[str, Any]:
    """Publish ``order.created``; ``fail`` rolls the mutation (and the event) back."""
    event = publish(ctx, "order.created", {"total_cents": body.total_cents})
    if body.fail:
        raise RuntimeError("rolled back after publishing")
    return {"event_id": event.id, "deliveries": event.delivery_ids}


@app.query("/peek")
def publish_from_a_query(ctx: Context) -> str:
    return publish(ctx, "order.created", {}).id
