"""Run the payment gateway: ``python -m examples.shop.gateway --port 8001``."""

from __future__ import annotations

import argparse
import logging
import os

import uvicorn

from examples.shop.gateway.app import create_app

DEFAULT_WEBHOOK_URL = "http://127.0.0.1:8000/api/v1/webhooks/payments"
#: For local runs only; ``make run`` generates a real secret and gives it to both sides.
DEVELOPMENT_WEBHOOK_SECRET = "whsec_dev"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m examples.shop.gateway",
        description="A stand-in card processor for the shop example (state in memory only).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("GATEWAY_PORT") or 8001),
        help="(GATEWAY_PORT)",
    )
    parser.add_argument(
        "--webhook-url",
        default=os.environ.get("SHOP_WEBHOOK_URL", DEFAULT_WEBHOOK_URL),
        help="where charge.succeeded and charge.refunded go; empty sends none (SHOP_WEBHOOK_URL)",
    )
    parser.add_argument(
        "--webhook-secret",
        default=os.environ.get("SHOP_GATEWAY_WEBHOOK_SECRET") or DEVELOPMENT_WEBHOOK_SECRET,
        help="signs the webhooks' Gateway-Signature (SHOP_GATEWAY_WEBHOOK_SECRET)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log = logging.getLogger("examples.shop.gateway")
    if not args.webhook_url:
        log.info("webhooks off (empty --webhook-url)")
    else:
        log.info("webhooks to %s", args.webhook_url)
        if args.webhook_secret == DEVELOPMENT_WEBHOOK_SECRET:
            log.warning("signing webhooks with the development secret")
    uvicorn.run(
        create_app(args.webhook_url, args.webhook_secret),
        host=args.host,
        port=args.port,
        log_config=None,
        # The app logs each request itself, with what it did about it.
        access_log=False,
        # A call parked by ``timeout`` mode must not hold up Ctrl-C for its whole delay.
        timeout_graceful_shutdown=2,
    )


if __name__ == "__main__":
    main()
