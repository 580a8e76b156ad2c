"""Demo data: deterministic, seeded once even when processes start together."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from sqlalchemy import func, select

from bastion import load_settings
from examples.shop.app import app
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


async def test_concurrent_start_ups_seed_exactly_once(bastion_database_url: str) -> None:
    settings = load_settings(
        None,
        environ={},
        extensions=app.config_sections,
        overrides={"database": {"url": bastion_database_url}, "shop": {"demo_products": 240}},
    )
    runtimes = [app.runtime(settings) for _ in range(3)]
    async with anyio.create_task_group() as group:
        for runtime in runtimes:
            group.start_soon(runtime.startup)
    with runtimes[0].database.read_transaction() as session:
        assert session.scalar(select(func.count()).select_from(Product)) == 240
        assert session.scalar(select(func.count()).select_from(Category)) == 12
    for runtime in runtimes:
        await runtime.shutdown()


async def test_seeding_can_be_switched_off(runtime: Any) -> None:
    with runtime.database.read_transaction() as session:
        assert session.scalar(select(func.count()).select_from(Product)) == 0


def _settings(url: str, **shop: Any) -> Any:
    return load_settings(
        None,
        environ={},
        extensions=app.config_sections,
        overrides={
            "database": {"url": url},
            "shop": {"seed_demo_data": False, **shop},
            "auth": {"argon2_memory_kib": 8192, "argon2_time_cost": 1},
        },
    )


async def test_the_configured_admin_is_created_once(bastion_database_url: str) -> None:
    from bastion.auth import find_user

    settings = _settings(
        bastion_database_url,
        admin_email="Boss@Shop.example.com",
        admin_password="violet-lantern-orbit-42",
    )
    for _ in range(2):
        runtime = app.runtime(settings)
        await runtime.startup()
        await runtime.shutdown()
    with runtime.database.read_transaction() as session:
        admin = find_user(session, "boss@shop.example.com")
        assert admin is not None
        assert admin.roles == ["admin"]
        assert runtime.passwords.verify(admin.password_hash, "violet-lantern-orbit-42")


async def test_a_generated_admin_password_is_printed_once_and_works(
    bastion_database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from bastion.auth import find_user

    settings = _settings(bastion_database_url)
    runtime = app.runtime(settings)
    await runtime.startup()
    printed = capsys.readouterr().out
    password = printed.split("password (shown once): ")[1].split()[0]
    await runtime.shutdown()
    second = app.runtime(settings)
    await second.startup()
    assert "password" not in capsys.readouterr().out
    await second.shutdown()
    with runtime.database.read_transaction() as session:
        admin = find_user(session, "admin@example.com")
        assert admin is not None
        assert runtime.passwords.verify(admin.password_hash, password)
