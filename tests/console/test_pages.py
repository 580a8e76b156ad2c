"""The console's pages over plain HTTP, against the shop: who may see them, the CSRF
rule for the actions they trigger, their security headers and static files."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from bastion import App, Runtime
from bastion.auth import create_user
from bastion.db.tables import ErrorLogEntry
from bastion.testing import BastionClient
from examples.shop.app import app as shop

PASSWORD = "correct horse battery staple"
PAGES = (
    "",
    "/errors",
    "/error-groups",
    "/jobs",
    "/workflows",
    "/users",
    "/audit",
    "/webhooks",
    "/rate-limits",
    "/alerts",
    "/health",
)


@pytest.fixture
def bastion_app() -> App:
    return shop


@pytest.fixture
def bastion_settings_overrides() -> dict[str, Any]:
    return {"shop": {"seed_demo_data": False}}


def add_user(runtime: Runtime, email: str, *roles: str) -> int:
    with runtime.database.transaction() as session:
        user = create_user(
            session, runtime.passwords, email=email, password=PASSWORD, roles=roles or ("user",)
        )
        session.flush()
        return user.id


@asynccontextmanager
async def signed_in(runtime: Runtime, email: str, *roles: str) -> AsyncIterator[BastionClient]:
    add_user(runtime, email, *roles)
    async with BastionClient(runtime.asgi()) as client:
        await client.sign_in(email, PASSWORD)
        yield client


async def test_anonymous_visitors_are_sent_to_the_login_page(client: BastionClient) -> None:
    for page in PAGES:
        response = await client.get(f"/console{page}")
        assert response.status_code == 303, page
        assert response.headers["location"].startswith("/console/login?next=%2Fconsole")
    response = await client.get("/console/jobs?status=dead")
    assert response.headers["location"] == "/console/login?next=%2Fconsole%2Fjobs%3Fstatus%3Ddead"
    login = await client.get("/console/login?next=/console/jobs")
    assert login.status_code == 200
    assert 'id="login-form"' in login.text
    assert 'data-next="/console/jobs"' in login.text


async def test_the_login_page_only_sends_back_into_the_console(client: BastionClient) -> None:
    for target in ("https://evil.example", "//evil.example/console", "/api/v1/me", "/consolex"):
        page = await client.get("/console/login", params={"next": target})
        assert 'data-next="/console"' in page.text, target


async def test_pages_allow_only_their_own_script_and_style(client: BastionClient) -> None:
    page = await client.get("/console/login")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "'unsafe-inline'" not in policy
    assert page.headers["cache-control"] == "no-store"
    # Every script is a file of the console's (the policy would block an inline one).
    scripts = re.findall(r"<script([^>]*)>", page.text)
    assert scripts
    assert all('src="/console/static/' in attributes for attributes in scripts)
    assert " style=" not in page.text


async def test_static_files_are_served_locally_with_cache_headers(client: BastionClient) -> None:
    page = await client.get("/console/login")
    for url in re.findall(r'(?:href|src)="(/console/static/[^"]+)"', page.text):
        response = await client.get(url)
        assert response.status_code == 200, url
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        again = await client.get(url, headers={"If-None-Match": response.headers["etag"]})
        assert again.status_code == 304
    unversioned = await client.get("/console/static/console.css")
    assert unversioned.headers["cache-control"] == "no-cache"
    assert unversioned.headers["content-type"].startswith("text/css")
    assert (await client.get("/console/static/missing.js")).status_code == 404


async def test_a_signed_in_non_admin_gets_a_403_page(runtime: Runtime) -> None:
    async with signed_in(runtime, "shopper@example.com") as shopper:
        for page in PAGES:
            response = await shopper.get(f"/console{page}")
            assert response.status_code == 403, page
            assert "may not use the admin console" in response.text
        tail = await shopper.get("/console/errors/tail")
        assert tail.status_code == 403
        assert tail.json()["code"] == "permission_denied"


async def test_the_live_tail_answers_anonymous_callers_with_401(client: BastionClient) -> None:
    response = await client.get("/console/errors/tail")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


async def test_an_admin_sees_every_page(runtime: Runtime) -> None:
    async with signed_in(runtime, "root@example.com", "admin") as admin:
        for page in PAGES:
            response = await admin.get(f"/console{page}")
            assert response.status_code == 200, (page, response.text)
            assert '<meta name="csrf-token" content="' in response.text
        overview = await admin.get("/console")
        assert overview.text.count('<svg class="chart"') == 4
        users = await admin.get("/console/users?q=ADMIN@")
        # The shop's own action on users is offered next to the platform's ban.
        assert "/api/v1/admin/users/" in users.text
        assert "/credits" in users.text
        assert "Adjust credits" in users.text
        assert "/ban" in users.text
        missing = await admin.get("/console/jobs/999999")
        assert missing.status_code == 404
        assert "no job with this id" in missing.text
        assert (await admin.get("/console/workflows/nope")).status_code == 404


async def test_overview_charts_draw_the_traffic_of_the_last_hour(runtime: Runtime) -> None:
    async with signed_in(runtime, "root@example.com", "admin") as admin:
        for _ in range(3):
            await admin.get("/api/v1/products")
        await admin.get("/api/v1/no-such-route")
        runtime.request_stats.flush(runtime.database)
        overview = await admin.get("/console")
    requests = re.search(r'data-series="requests" data-points="(\d+)" d="([^"]*)"', overview.text)
    assert requests is not None
    assert int(requests.group(1)) == 60  # every minute has a count, zero or not
    assert re.search(r"L[\d.]+,[\d.]+", requests.group(2))
    latency = re.search(r'data-series="p95" data-points="(\d+)"', overview.text)
    assert latency is not None
    assert int(latency.group(1)) >= 1


async def test_the_live_tail_returns_only_what_is_new(runtime: Runtime) -> None:
    async with signed_in(runtime, "root@example.com", "admin") as admin:
        assert (await admin.get("/console/errors/tail")).json() == {"server": [], "client": []}
        with runtime.database.transaction() as session:
            for status in (500, 503):
                session.add(
                    ErrorLogEntry(
                        code="internal_error",
                        status=status,
                        method="GET",
                        path="/api/v1/boom",
                        request_id=f"req-{status}",
                    )
                )
        fresh = (await admin.get("/console/errors/tail")).json()["server"]
        assert [e["status"] for e in fresh] == [503, 500]
        assert fresh[0]["request_id"] == "req-503"
        after = (await admin.get(f"/console/errors/tail?server_after={fresh[1]['id']}")).json()
        assert [e["status"] for e in after["server"]] == [503]
        page = await admin.get("/console/errors")
        assert f'data-server-after="{fresh[0]["id"]}"' in page.text
        bad = await admin.get("/console/errors/tail?server_after=-1")
        assert bad.status_code == 422


async def test_console_actions_need_the_csrf_token_and_a_reason(runtime: Runtime) -> None:
    victim = add_user(runtime, "victim@example.com")
    async with signed_in(runtime, "root@example.com", "admin") as admin:
        token = admin.headers.pop("X-CSRF-Token")
        url = f"/api/v1/admin/users/{victim}/ban"
        forged = await admin.post(url, json={"reason": "spam"})
        assert forged.status_code == 403
        assert forged.json()["code"] == "csrf_failed"
        short = await admin.post(url, json={"reason": "x"}, headers={"X-CSRF-Token": token})
        assert short.status_code == 422
        banned = await admin.post(url, json={"reason": "spam"}, headers={"X-CSRF-Token": token})
        assert banned.status_code == 200, banned.text
        audit = await admin.get("/console/audit")
        assert "user.ban" in audit.text
        assert "spam" in audit.text
        users = await admin.get("/console/users?q=victim")
        assert "badge-banned" in users.text


async def test_rate_limit_hits_are_read_from_the_runtimes_metrics(make_runtime: Any) -> None:
    runtime = make_runtime(ratelimit={"default_limits": ["3/minute"]})
    await runtime.startup()
    async with signed_in(runtime, "root@example.com", "admin") as admin:
        # Anonymous calls from the same address: the login spent one of the three.
        async with BastionClient(runtime.asgi()) as anonymous:
            statuses = [(await anonymous.get("/api/v1/products")).status_code for _ in range(5)]
        assert statuses.count(429) == 3
        page = await admin.get("/console/rate-limits")
    assert re.search(r'<td>ip</td><td class="num">3</td>', page.text), page.text


async def test_the_console_can_be_moved_or_switched_off(make_runtime: Any) -> None:
    moved = make_runtime(console={"path": "/ops/console"})
    await moved.startup()
    async with BastionClient(moved.asgi()) as client:
        assert (await client.get("/console")).status_code == 404
        response = await client.get("/ops/console")
        assert response.headers["location"].startswith("/ops/console/login?next=")
        login = await client.get("/ops/console/login")
        assert 'src="/ops/console/static/console.js?v=' in login.text
    off = make_runtime(console={"enabled": False})
    await off.startup()
    async with BastionClient(off.asgi()) as client:
        assert (await client.get("/console/login")).status_code == 404


def test_an_apps_user_action_must_name_the_user() -> None:
    with pytest.raises(ValueError, match=r"must contain \{id\}"):
        App("actions").console_user_action("Refund", "/admin/refunds")


async def test_the_console_is_not_part_of_the_api_schema(client: BastionClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert paths
    assert not [path for path in paths if path.startswith("/console")]
