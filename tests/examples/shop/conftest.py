from __future__ import annotations

import pytest

from bastion import App, Principal
from examples.shop.app import app

ADMIN = Principal(
    "admin-1",
    roles=frozenset({"admin"}),
    permissions=frozenset({"read:all", "write:all", "delete:all"}),
)
USER = Principal(
    "user-1", roles=frozenset({"user"}), permissions=frozenset({"read:public", "write:own"})
)


@pytest.fixture
def bastion_app() -> App:
    return app
