"""The shop's payment gateway: a stand-in card processor run as its own process.

It is not a bastion app on purpose: it plays an external service, so the shop has to
cope with it the way it would with a real processor (time-outs, 500s, retries under an
idempotency key, webhooks that arrive late or twice). Run it with
``python -m examples.shop.gateway``; see docs/howto/payment-gateway.md.
"""
