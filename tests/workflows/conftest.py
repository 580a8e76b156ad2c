"""Fixtures for workflow tests."""

from __future__ import annotations

from typing import Any

import pytest

from bastion import App
from tests.workflows.apps import CALLS, UNDONE, app


@pytest.fixture
def bastion_app() -> App:
    return app


@pytest.fixture
def bastion_settings_overrides() -> dict[str, Any]:
    return {"jobs": {"poll_interval_s": 0.05, "lease_s": 1.5, "shutdown_grace_s": 1}}


@pytest.fixture(autouse=True)
def _fresh_calls() -> None:
    CALLS.clear()
    UNDONE.clear()
