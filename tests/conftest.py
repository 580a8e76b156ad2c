"""Fixtures for every test folder: the OIDC test provider (``oidc_provider``) and the shop's
payment gateway process (``payment_gateway``, ``start_payment_gateway``)."""

from __future__ import annotations

pytest_plugins = ["tests.support.oidc", "tests.support.gateway", "tests.support.smtp"]
