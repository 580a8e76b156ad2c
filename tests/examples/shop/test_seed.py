"""Demo data: deterministic, seeded once even when processes start together."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from sqlalchemy import func, select

from bastion.testing import RuntimeFactory
from examples.shop.models import Category, Product
from examples.shop.seed import demo_products


@pytest.fixture
def bastion_settings_overrides() -> dict[str, Any]:
    return {"shop": {"seed_demo_data": False}}


def test_demo_products_are_the_same_on_every_run() -> None:
    first = [(p.name, p.price_cents, p.stock) for p in demo_products(240, list(range(1, 13)))]
    second = [(p.name, p.price_cents, p.stock) for p in demo_products(240, list(range(1, 13)))]
    assert first == second
    assert len({name for name, _, _ in first}) == 240


async def test_concurrent_start_ups_seed_exactly_once(make_runtime: RuntimeFactory) -> None:
    runtimes = [make_runtime(shop={"seed_demo_data": True, "demo_products": 240}) for _ in range(3)]
    async with anyio.create_task_group() as group:
        for runtime in runtimes:
            group.start_soon(runtime.startup)
    with runtimes[0].database.read_transaction() as session:
        assert session.scalar(select(func.count()).select_from(Product)) == 240
        assert session.scalar(select(func.count()).select_from(Category)) == 12


async def test_seeding_can_be_switched_off(runtime: Any) -> None:
    with runtime.database.read_transaction() as session:
        assert session.scalar(select(func.count()).select_from(Product)) == 0


async def test_the_configured_admin_is_created_once(make_runtime: RuntimeFactory) -> None:
    from bastion.auth import find_user

    shop = {"admin_email": "Boss@Shop.example.com", "admin_password": "violet-lantern-orbit-42"}
    for _ in range(2):
        runtime = make_runtime(shop=shop)
        await runtime.startup()
    with runtime.database.read_transaction() as session:
        admin = find_user(session, "boss@shop.example.com")
        assert admin is not None
        assert admin.roles == ["admin"]
        assert runtime.passwords.verify(admin.password_hash, "violet-lantern-orbit-42")


async def test_a_generated_admin_password_is_printed_once_and_works(
    make_runtime: RuntimeFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    from bastion.auth import find_user

    runtime = make_runtime()
    await runtime.startup()
    password = capsys.readouterr().out.split("password (shown once): ")[1].split()[0]
    await make_runtime().startup()
    assert "password" not in capsys.readouterr().out
    with runtime.database.read_transaction() as session:
        admin = find_user(session, "admin@example.com")
        assert admin is not None
        assert runtime.passwords.verify(admin.password_hash, password)
