"""Fixtures for every test folder: the OIDC test provider (``oidc_provider``)."""

from __future__ import annotations

pytest_plugins = ["tests.support.oidc"]
