"""Error groups: the error log summed up by code and route, its live tail, its retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from bastion import App, Runtime
from bastion.db.tables import ErrorLogEntry, utcnow
from bastion.monitoring import count_error_groups, error_groups, recent_errors
from bastion.testing import BastionClient
from tests.monitoring.ops_app import app


@pytest.fixture
def bastion_app() -> App:
    return app


@pytest.fixture
def bastion_settings_overrides() -> dict[str, Any]:
    return {"errors": {"log_codes": ["conflict", "not_found"], "log_retention_s": 86_400}}


async def _provoke(client: BastionClient) -> dict[str, list[str]]:
    """Three 500s, two logged 409s on two paths of one route, one unmatched path;
    returns the request ids per kind, in order."""
    ids: dict[str, list[str]] = {"boom": [], "clash": [], "nowhere": []}
    for _ in range(3):
        response = await client.get("/api/v1/boom")
        assert response.status_code == 500
        ids["boom"].append(response.headers["x-request-id"])
    for item in (1, 2):
        response = await client.get(f"/api/v1/items/{item}")
        assert response.status_code == 409
        ids["clash"].append(response.headers["x-request-id"])
    response = await client.get("/nowhere")
    assert response.status_code == 404
    ids["nowhere"].append(response.headers["x-request-id"])
    return ids


async def test_errors_are_grouped_by_code_and_route_with_counts_and_the_latest_sample(
    client: BastionClient, runtime: Runtime
) -> None:
    ids = await _provoke(client)
    with runtime.database.read_transaction() as session:
        groups = error_groups(session)
        assert count_error_groups(session) == 3
    # Most recently seen first.
    assert [(g.code, g.route, g.count, g.status) for g in groups] == [
        ("not_found", None, 1, 404),
        ("conflict", "/api/v1/items/{item_id}", 2, 409),
        ("internal_error", "/api/v1/boom", 3, 500),
    ]
    nowhere, clash, boom = groups
    assert boom.request_id == ids["boom"][-1]
    assert boom.first_seen < boom.last_seen <= clash.first_seen
    assert (clash.request_id, clash.path, clash.method) == (
        ids["clash"][-1],
        "/api/v1/items/2",
        "GET",
    )
    assert nowhere.path == "/nowhere"
    assert nowhere.first_seen == nowhere.last_seen


async def test_since_counts_only_later_errors_and_limit_and_offset_page_the_groups(
    client: BastionClient, runtime: Runtime
) -> None:
    await _provoke(client)
    middle = datetime.now(UTC)
    again = await client.get("/api/v1/boom")
    with runtime.database.read_transaction() as session:
        [later] = error_groups(session, since=middle)
        assert (later.code, later.count, later.request_id) == (
            "internal_error",
            1,
            again.headers["x-request-id"],
        )
        assert later.first_seen == later.last_seen >= middle
        # The 500s are now the most recent group, with all four counted.
        first, second = error_groups(session, limit=2)
        assert [(first.code, first.count), (second.code, second.count)] == [
            ("internal_error", 4),
            ("not_found", 1),
        ]
        [third] = error_groups(session, limit=2, offset=2)
        assert third.code == "conflict"
        assert error_groups(session, since=datetime.now(UTC)) == []


async def test_recent_errors_are_newest_first_and_tail_after_an_id(
    client: BastionClient, runtime: Runtime
) -> None:
    ids = await _provoke(client)
    with runtime.database.read_transaction() as session:
        latest = recent_errors(session, limit=4)
        assert [e.request_id for e in latest] == [
            ids["nowhere"][0],
            *reversed(ids["clash"]),
            ids["boom"][-1],
        ]
        assert [e.route for e in latest[:2]] == [None, "/api/v1/items/{item_id}"]
        assert recent_errors(session, after_id=latest[0].id) == []
        tail = recent_errors(session, after_id=latest[2].id)
        assert [e.id for e in tail] == [latest[0].id, latest[1].id]


async def test_housekeeping_deletes_errors_older_than_the_retention(
    client: BastionClient, runtime: Runtime
) -> None:
    await _provoke(client)
    with runtime.database.transaction() as session:
        session.add(
            ErrorLogEntry(
                created_at=utcnow() - timedelta(days=2),
                code="internal_error",
                status=500,
                method="GET",
                path="/old",
                route="/old",
            )
        )
    assert runtime.housekeep()["errors"] == 1
    with runtime.database.read_transaction() as session:
        assert session.scalar(select(func.count()).select_from(ErrorLogEntry)) == 6
        assert session.scalar(select(ErrorLogEntry).where(ErrorLogEntry.path == "/old")) is None
