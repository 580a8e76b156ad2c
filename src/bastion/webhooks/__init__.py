"""Webhooks in and out.

In: ``app.webhook_receiver(path, handler=job, secret_setting=...)`` serves ``POST``
on the path, verifies the HMAC signature, records each event id once and hands the
event to a job. Out: ``app.use_webhooks()`` adds subscriptions, a delivery log and
their admin endpoints; ``publish(ctx, "order.created", data)`` inside a mutation
delivers the event, signed, to every subscription that wants it, with retries.
"""

from __future__ import annotations

from bastion.errors import InvalidSignature
from bastion.webhooks.admin import admin_functions
from bastion.webhooks.delivery import DeliveryStatus, PublishedEvent
from bastion.webhooks.receiving import WebhookReceiver, declare_receiver, default_event_id
from bastion.webhooks.service import (
    DEFAULT_RETRY,
    DELIVERY_JOB,
    WebhookDeclarations,
    WebhookService,
    publish,
)
from bastion.webhooks.signing import sign, verify_signature
from bastion.webhooks.tables import WebhookDeliveryRow, WebhookEventRow, WebhookSubscriptionRow

__all__ = [
    "DEFAULT_RETRY",
    "DELIVERY_JOB",
    "DeliveryStatus",
    "InvalidSignature",
    "PublishedEvent",
    "WebhookDeclarations",
    "WebhookDeliveryRow",
    "WebhookEventRow",
    "WebhookReceiver",
    "WebhookService",
    "WebhookSubscriptionRow",
    "admin_functions",
    "declare_receiver",
    "default_event_id",
    "publish",
    "sign",
    "verify_signature",
]
