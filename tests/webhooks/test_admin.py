"""The admin endpoints: admins only, reasons required and audited, secrets shown once."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from bastion import Runtime
from bastion.auth.audit import AuditEntry
from bastion.auth.users import create_user
from bastion.testing import BastionClient

PASSWORD = "correct horse battery staple"
HOOK = {"url": "https://example.com/hooks", "events": ["order.created"], "reason": "crm sync"}

#: Every admin endpoint: method, path, JSON body or query.
ENDPOINTS: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/api/v1/admin/webhooks", {"json": HOOK}),
    ("GET", "/api/v1/admin/webhooks", {}),
    ("DELETE", "/api/v1/admin/webhooks/1", {"params": {"reason": "retired"}}),
    ("GET", "/api/v1/admin/webhooks/deliveries", {}),
    ("GET", "/api/v1/admin/webhooks/1/deliveries", {}),
    ("POST", "/api/v1/admin/webhooks/1/deliveries/1/redeliver", {"json": {"reason": "again"}}),
]


async def signed_in(client: BastionClient, runtime: Runtime, *, roles: list[str]) -> None:
    email = f"{'-'.join(roles)}@example.com"
    with runtime.database.transaction() as session:
        create_user(session, runtime.passwords, email=email, password=PASSWORD, roles=roles)
    await client.sign_in(email, PASSWORD)


@pytest.mark.parametrize(("method", "path", "kwargs"), ENDPOINTS)
async def test_admin_endpoints_refuse_anonymous_callers_and_users(
    client: BastionClient, runtime: Runtime, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    anonymous = await client.request(method, path, **kwargs)
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "not_authenticated"
    await signed_in(client, runtime, roles=["user"])
    user = await client.request(method, path, **kwargs)
    assert user.status_code == 403
    assert user.json()["code"] == "permission_denied"


async def test_an_admin_manages_subscriptions_with_reasons_in_the_audit_log(
    client: BastionClient, runtime: Runtime
) -> None:
    await signed_in(client, runtime, roles=["admin"])
    created = await client.post(
        "/api/v1/admin/webhooks", json={**HOOK, "events": ["order.*", "order.created", "*"]}
    )
    assert created.status_code == 201
    body = created.json()
    assert body["secret"].startswith("whsec_")
    assert len(body["secret"]) > 40
    assert (body["url"], body["events"], body["active"]) == (
        HOOK["url"],
        ["*", "order.*", "order.created"],
        True,
    )
    listed = (await client.get("/api/v1/admin/webhooks")).json()
    assert listed["pagination"] == {"page": 1, "limit": 20, "total": 1, "total_pages": 1}
    [shown] = listed["data"]
    assert "secret" not in shown
    assert shown["id"] == body["id"]

    no_reason = await client.delete(f"/api/v1/admin/webhooks/{body['id']}")
    assert no_reason.status_code == 422
    assert no_reason.json()["errors"][0]["code"] == "reason_required"
    deleted = await client.delete(
        f"/api/v1/admin/webhooks/{body['id']}", params={"reason": "retired"}
    )
    assert deleted.status_code == 204
    again = await client.delete(f"/api/v1/admin/webhooks/{body['id']}", params={"reason": "x" * 3})
    assert again.status_code == 404
    assert (await client.get(f"/api/v1/admin/webhooks/{body['id']}/deliveries")).status_code == 404

    with runtime.database.read_transaction() as session:
        entries = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [(e.action, e.target_id, e.reason) for e in entries] == [
        ("webhook.subscribe", str(body["id"]), "crm sync"),
        ("webhook.unsubscribe", str(body["id"]), "retired"),
    ]
    assert all(e.request_id for e in entries)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "https:///no-host"}, "url"),
        ({"events": []}, "events"),
        ({"events": ["Order Created"]}, "events"),
        ({"events": ["order.**"]}, "events"),
        ({"reason": "no"}, "reason"),
        ({"secret": "mine"}, "secret"),
    ],
)
async def test_a_bad_subscription_is_422(
    client: BastionClient, runtime: Runtime, change: dict[str, Any], field: str
) -> None:
    await signed_in(client, runtime, roles=["admin"])
    response = await client.post("/api/v1/admin/webhooks", json={**HOOK, **change})
    assert response.status_code == 422
    assert field in response.json()["errors"][0]["field"]


async def test_the_delivery_log_filters_by_subscription_and_status(
    client: BastionClient, runtime: Runtime
) -> None:
    await signed_in(client, runtime, roles=["admin"])
    first = (await client.post("/api/v1/admin/webhooks", json=HOOK)).json()
    second = (await client.post("/api/v1/admin/webhooks", json=HOOK)).json()
    for _ in range(3):
        await client.post("/api/v1/orders", json={"total_cents": 1})
    everything = (await client.get("/api/v1/admin/webhooks/deliveries")).json()
    assert everything["pagination"]["total"] == 6
    ids = [d["id"] for d in everything["data"]]
    assert ids == sorted(ids, reverse=True)
    mine = await client.get(
        "/api/v1/admin/webhooks/deliveries",
        params={"subscription_id": first["id"], "status": "pending", "limit": 2},
    )
    assert mine.json()["pagination"] == {"page": 1, "limit": 2, "total": 3, "total_pages": 2}
    assert {d["subscription_id"] for d in mine.json()["data"]} == {first["id"]}
    theirs = (await client.get(f"/api/v1/admin/webhooks/{second['id']}/deliveries")).json()
    assert {d["subscription_id"] for d in theirs["data"]} == {second["id"]}
    [entry] = theirs["data"][:1]
    assert (entry["event_type"], entry["payload"], entry["attempts"]) == (
        "order.created",
        {"total_cents": 1},
        0,
    )
    none = await client.get(f"/api/v1/admin/webhooks/{second['id']}/deliveries?status=dead")
    assert none.json()["data"] == []
    bad = await client.get("/api/v1/admin/webhooks/deliveries", params={"status": "lost"})
    assert bad.status_code == 422


async def test_the_routes_are_in_the_openapi_document(client: BastionClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert {"post", "get"} <= set(paths["/api/v1/admin/webhooks"])
    assert (
        "post"
        in paths["/api/v1/admin/webhooks/{subscription_id}/deliveries/{delivery_id}/redeliver"]
    )
    receiver = paths["/api/v1/webhooks/payments"]["post"]
    assert receiver["parameters"][0]["name"] == "Gateway-Signature"
