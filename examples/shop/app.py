"""The shop app object: its declarations are in the modules imported at the bottom."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from bastion import App, Context, NotAuthenticated, PermissionDenied, Settings
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
    warehouse_zip: str = Field("10001", pattern=r"^[0-9]{5}$")
    """Where parcels leave from: shipping costs grow with the distance between zip codes."""
    gateway_url: str = "http://127.0.0.1:8001"
    """The payment gateway's base URL (``SHOP_GATEWAY_URL``)."""
    gateway_webhook_secret: SecretStr = SecretStr("whsec_dev")
    """Signs the gateway's webhooks (``SHOP_GATEWAY_WEBHOOK_SECRET``, shared with the gateway)."""
    payment_retry_after_s: int = Field(5, ge=1, le=3600)
    """``Retry-After`` of 503 ``payment_unavailable`` when the gateway failed; an open
    circuit breaker gives its own (the seconds until it lets a trial call through)."""
    reconcile_retry_s: float = Field(30.0, gt=0, le=86_400)
    """Pause between automatic attempts to settle a reconciliation with the gateway."""
    reconcile_max_attempts: int = Field(20, ge=1, le=1000)
    """After that many failed attempts a reconciliation is left to a person."""
    webhook_grace_s: float = Field(600.0, ge=0, le=86_400)
    """How long a ``charge.succeeded`` for a charge no order holds waits for its checkout
    to record the order (or refund the charge) before it becomes a reconciliation."""


def shop_settings(settings: Settings) -> ShopSettings:
    """The ``[shop]`` section of ``settings``."""
    section: ShopSettings = settings.section("shop")
    return section


def signed_in(ctx: Context) -> int:
    """The caller's user id: 401 ``not_authenticated`` for anonymous callers, 403 for a
    principal that is not a user (it has no cart, orders or credits)."""
    if ctx.user is None:
        raise NotAuthenticated()
    if not ctx.user.id.isdigit():
        raise PermissionDenied()
    return int(ctx.user.id)


app = App(
    "shop",
    metadata=Base.metadata,
    migrations=HERE / "migrations",
    messages=HERE / "messages",
    config_sections={"shop": ShopSettings},
    config=HERE / "bastion.toml",
    mail_templates=HERE / "templates" / "mail",
    title="bastion shop",
    description="The flagship example app of bastion: catalog, cart, checkout, orders.",
)
# Outbound webhooks (order.created, order.refunded) with their admin endpoints.
app.use_webhooks()
# Hourly purge of expired sessions, tokens, idempotency keys and old finished jobs.
app.use_housekeeping()
# Browsers report their errors to POST /api/v1/client-logs (the console's pages too);
# a job stores each batch, and entries older than [client_logs] retention_s are purged.
app.use_client_logs()
# Alert rules ([alerts] in bastion.toml) evaluated every minute by a worker; their states
# and history at GET /api/v1/admin/alerts.
app.use_alerts()
# The gateway is one small service: at most 4 payment jobs at once across all workers,
# and no more than 20 starts a second (refunds and reconciliations after an outage).
app.queue("payments", concurrency=4, rate="20/second")

# Importing these modules declares their functions on `app`. They import each other as
# modules (`from examples.shop import ledger`), never names, so that any of them can be
# imported first: while this import runs, the one imported first is still incomplete.
from examples.shop import (  # noqa: E402
    accounts,
    cart,
    catalog,
    checkout,
    dashboard,
    images,
    ledger,
    live,
    orders,
    payments,
    seed,
)

__all__ = [
    "accounts",
    "app",
    "cart",
    "catalog",
    "checkout",
    "dashboard",
    "images",
    "ledger",
    "live",
    "orders",
    "payments",
    "seed",
    "shop_settings",
    "signed_in",
]
