"""Store credits: the user's balance and ledger, and admin adjustments that never take a
balance below zero (shop-api.md, Checkout and orders; Administration)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from sqlalchemy import select

from bastion import BastionError, Principal, Runtime
from bastion.auth.audit import AuditEntry
from bastion.testing import BastionClient
from examples.shop import ledger
from examples.shop.models import CreditEntry
from tests.examples.shop.conftest import ADMIN, USER
from tests.examples.shop.shoppers import API, balance_of, grant_credits, make_user, problem


@pytest.fixture
def bastion_settings_overrides() -> dict[str, Any]:
    return {"shop": {"seed_demo_data": False}}


async def _adjust(
    client: BastionClient, user: Principal, amount: int, reason: str = "goodwill"
) -> Any:
    with client.acting_as(ADMIN):
        return await client.post(
            f"{API}/admin/users/{user.id}/credits",
            json={"amount_cents": amount, "reason": reason},
        )


async def test_a_user_sees_the_balance_and_the_ledger_newest_first(
    client: BastionClient, runtime: Runtime
) -> None:
    shopper = make_user(runtime, "ada@example.com")
    with client.acting_as(shopper):
        empty = (await client.get(f"{API}/me/credits")).json()
    for amount in (500, -200, 1000):
        assert (await _adjust(client, shopper, amount, f"adjust {amount}")).status_code == 200
    with client.acting_as(shopper):
        page = (await client.get(f"{API}/me/credits?limit=2")).json()
        rest = (await client.get(f"{API}/me/credits?limit=2&page=2")).json()

    assert empty == {
        "balance_cents": 0,
        "entries": {
            "data": [],
            "pagination": {"page": 1, "limit": 20, "total": 0, "total_pages": 0},
        },
    }
    assert page["balance_cents"] == 1300
    assert [(e["amount_cents"], e["reason"]) for e in page["entries"]["data"]] == [
        (1000, "adjust 1000"),
        (-200, "adjust -200"),
    ]
    assert set(page["entries"]["data"][0]) == {"id", "amount_cents", "reason", "created_at"}
    assert page["entries"]["pagination"] == {"page": 1, "limit": 2, "total": 3, "total_pages": 2}
    assert [e["amount_cents"] for e in rest["entries"]["data"]] == [500]


async def test_an_admin_grants_and_takes_credits_with_an_audited_reason(
    client: BastionClient, runtime: Runtime
) -> None:
    shopper = make_user(runtime, "ada@example.com")
    granted = await _adjust(client, shopper, 2500, "late delivery")
    taken = await _adjust(client, shopper, -1000, "duplicate grant")
    assert (granted.status_code, granted.json()) == (200, {"balance_cents": 2500})
    assert taken.json() == {"balance_cents": 1500}
    with runtime.database.read_transaction() as session:
        entries = list(
            session.scalars(select(AuditEntry).where(AuditEntry.action == "credits.adjust"))
        )
    assert [(e.actor_id, e.target_id, e.reason, e.data["amount_cents"]) for e in entries] == [
        (ADMIN.id, shopper.id, "late delivery", 2500),
        (ADMIN.id, shopper.id, "duplicate grant", -1000),
    ]


async def test_taking_more_than_the_balance_is_409_and_changes_nothing(
    client: BastionClient, runtime: Runtime
) -> None:
    shopper = make_user(runtime, "ada@example.com")
    grant_credits(runtime, shopper, 300)
    response = await _adjust(client, shopper, -500)
    assert problem(response) == (409, "insufficient_credits")
    assert response.json()["detail"] == "You need 500 credits, but only have 300."
    assert balance_of(runtime, shopper) == 300


@pytest.mark.parametrize(
    ("who", "body", "expected"),
    [
        (ADMIN, {"amount_cents": 0, "reason": "nothing"}, (422, "validation_failed")),
        (ADMIN, {"amount_cents": 100, "reason": "no"}, (422, "validation_failed")),
        (USER, {"amount_cents": 100, "reason": "for me"}, (403, "permission_denied")),
        (None, {"amount_cents": 100, "reason": "for me"}, (401, "not_authenticated")),
    ],
)
async def test_adjustments_are_for_admins_with_a_reason_and_an_amount(
    client: BastionClient,
    runtime: Runtime,
    who: Principal | None,
    body: dict[str, Any],
    expected: tuple[int, str],
) -> None:
    shopper = make_user(runtime, "ada@example.com")
    with client.acting_as(who):
        response = await client.post(f"{API}/admin/users/{shopper.id}/credits", json=body)
    assert problem(response) == expected
    assert balance_of(runtime, shopper) == 0


async def test_adjusting_an_unknown_user_is_404(client: BastionClient) -> None:
    unknown = Principal("99999")
    assert problem(await _adjust(client, unknown, 100)) == (404, "not_found")


async def test_concurrent_debits_never_take_the_balance_below_zero(
    client: BastionClient, runtime: Runtime
) -> None:
    shopper = make_user(runtime, "ada@example.com")
    grant_credits(runtime, shopper, 1000)
    statuses: list[int] = []

    async def take() -> None:
        statuses.append((await _adjust(client, shopper, -300)).status_code)

    async with anyio.create_task_group() as group:
        for _ in range(8):
            group.start_soon(take)
    assert sorted(statuses) == [200] * 3 + [409] * 5
    assert balance_of(runtime, shopper) == 100


@pytest.mark.slow
async def test_a_thousand_concurrent_debits_of_one_against_a_hundred_leave_exactly_zero(
    runtime: Runtime,
) -> None:
    """Issue #5's acceptance: exactly 100 succeed, the balance ends at 0, and the ledger
    holds exactly those 100 debits."""
    shopper = make_user(runtime, "ada@example.com")
    grant_credits(runtime, shopper, 100)
    outcomes: list[str] = []
    threads = anyio.CapacityLimiter(32)

    def debit() -> None:
        try:
            with runtime.database.transaction() as session:
                ledger.add_credits(session, int(shopper.id), -1, "race")
        except BastionError as error:
            outcomes.append(error.error_code)
        else:
            outcomes.append("debited")

    async def attempt() -> None:
        await anyio.to_thread.run_sync(debit, limiter=threads)

    async with anyio.create_task_group() as group:
        for _ in range(1000):
            group.start_soon(attempt)
    assert sorted(set(outcomes)) == ["debited", "insufficient_credits"]
    assert (outcomes.count("debited"), outcomes.count("insufficient_credits")) == (100, 900)
    assert balance_of(runtime, shopper) == 0
    with runtime.database.read_transaction() as session:
        debits = session.scalars(
            select(CreditEntry.amount_cents).where(
                CreditEntry.user_id == int(shopper.id), CreditEntry.reason == "race"
            )
        ).all()
    assert debits == [-1] * 100
