"""The operations API under /api/v1/admin: admins only, lists as offset pages, job retry and
cancel with a reason, audited, and 409 when the job is not in a state that allows it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, select

from bastion import App, Principal, Runtime
from bastion.auth.audit import AuditEntry
from bastion.auth.users import create_user, principal_for
from bastion.db.tables import MetaEntry, utcnow
from bastion.testing import BastionClient, job_is, job_row, run_worker_until
from bastion.workflows.tables import WorkflowRow
from tests.monitoring.ops_app import FAIL_KEY, app, flaky

API = "/api/v1/admin"

#: Every endpoint: method, path, request options.
ENDPOINTS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/errors", {}),
    ("GET", "/client-logs", {}),
    ("GET", "/jobs", {}),
    ("GET", "/jobs/1", {}),
    ("POST", "/jobs/1/retry", {"json": {"reason": "try again"}}),
    ("POST", "/jobs/1/cancel", {"json": {"reason": "not needed"}}),
    ("GET", "/workflows", {}),
    ("GET", "/audit-log", {}),
    ("GET", "/users", {}),
]


@pytest.fixture
def bastion_app() -> App:
    return app


@pytest.fixture
def bastion_settings_overrides() -> dict[str, Any]:
    return {"jobs": {"poll_interval_s": 0.05}}


def make_user(runtime: Runtime, email: str, *, roles: list[str], name: str = "") -> Principal:
    with runtime.database.transaction() as session:
        user = create_user(
            session, runtime.passwords, email=email, password=None, name=name, roles=roles
        )
        session.flush()
        return principal_for(user, runtime.settings.auth.roles)


@pytest.fixture
def admin(runtime: Runtime) -> Principal:
    return make_user(runtime, "root@example.com", roles=["admin"], name="Root")


@pytest.mark.parametrize(("method", "path", "options"), ENDPOINTS)
async def test_anonymous_callers_get_401_and_users_403(
    client: BastionClient, runtime: Runtime, method: str, path: str, options: dict[str, Any]
) -> None:
    anonymous = await client.request(method, API + path, **options)
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "not_authenticated")
    user = make_user(runtime, "ann@example.com", roles=["user"])
    with client.acting_as(user):
        refused = await client.request(method, API + path, **options)
    assert (refused.status_code, refused.json()["code"]) == (403, "permission_denied")


async def dead_job(runtime: Runtime) -> int:
    """A ``flaky`` job that failed its only attempt; ``flaky`` succeeds from now on."""
    with runtime.database.transaction() as session:
        session.add(MetaEntry(key=FAIL_KEY, value="1"))
    job_id = await runtime.jobs.enqueue(flaky)
    await run_worker_until(runtime, job_is(runtime, job_id, "dead"))
    with runtime.database.transaction() as session:
        session.execute(delete(MetaEntry).where(MetaEntry.key == FAIL_KEY))
    return job_id


def audit_rows(runtime: Runtime, action: str) -> list[AuditEntry]:
    with runtime.database.read_transaction() as session:
        rows = list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))
        session.expunge_all()
        return rows


async def test_an_admin_retries_a_dead_job_and_a_worker_completes_it(
    client: BastionClient, runtime: Runtime, admin: Principal
) -> None:
    job_id = await dead_job(runtime)
    with client.acting_as(admin):
        listed = (await client.get(f"{API}/jobs", params={"status": "dead"})).json()
        assert [job["id"] for job in listed["data"]] == [job_id]
        assert listed["pagination"] == {"page": 1, "limit": 20, "total": 1, "total_pages": 1}
        shown = (await client.get(f"{API}/jobs/{job_id}")).json()
        assert (shown["status"], shown["attempts"], shown["name"]) == ("dead", 1, "flaky")
        assert "flaky failed on purpose" in shown["last_error"]
        assert {"args", "progress", "request_id", "trace_context"} <= shown.keys()

        retried = await client.post(f"{API}/jobs/{job_id}/retry", json={"reason": "bug fixed"})
    assert retried.status_code == 200
    assert (retried.json()["status"], retried.json()["attempts"]) == ("queued", 0)
    [entry] = audit_rows(runtime, "job.retry")
    assert (entry.actor_id, entry.target_type, entry.target_id, entry.reason) == (
        admin.id,
        "job",
        str(job_id),
        "bug fixed",
    )
    assert entry.request_id == retried.headers["x-request-id"]
    assert entry.data["previous_status"] == "dead"
    await run_worker_until(runtime, job_is(runtime, job_id, "succeeded"))
    assert job_row(runtime, job_id).result == "done"


async def test_cancel_and_the_409s_of_impossible_transitions(
    client: BastionClient, runtime: Runtime, admin: Principal
) -> None:
    job_id = await runtime.jobs.enqueue(flaky, delay=3600)
    with client.acting_as(admin):
        early = await client.post(f"{API}/jobs/{job_id}/retry", json={"reason": "too early"})
        assert (early.status_code, early.json()["code"]) == (409, "job_not_retryable")
        assert "queued" in early.json()["detail"]
        cancelled = await client.post(f"{API}/jobs/{job_id}/cancel", json={"reason": "duplicate"})
        assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")
        again = await client.post(f"{API}/jobs/{job_id}/cancel", json={"reason": "duplicate"})
        assert (again.status_code, again.json()["code"]) == (409, "job_not_cancellable")
        missing = await client.post(f"{API}/jobs/999/cancel", json={"reason": "duplicate"})
        assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
        assert (await client.get(f"{API}/jobs/999")).status_code == 404
    assert job_row(runtime, job_id).status == "cancelled"
    assert len(audit_rows(runtime, "job.cancel")) == 1  # refusals are not audited


@pytest.mark.parametrize(
    ("body", "code"), [({}, "missing"), ({"reason": " no "}, "reason_required")]
)
async def test_a_job_action_without_a_reason_is_422_and_changes_nothing(
    client: BastionClient, runtime: Runtime, admin: Principal, body: dict[str, Any], code: str
) -> None:
    job_id = await runtime.jobs.enqueue(flaky, delay=3600)
    with client.acting_as(admin):
        response = await client.post(f"{API}/jobs/{job_id}/cancel", json=body)
    assert response.status_code == 422
    assert response.json()["errors"][0] == {
        "field": "reason",
        "code": code,
        "message": response.json()["errors"][0]["message"],
    }
    assert job_row(runtime, job_id).status == "queued"


async def test_jobs_are_filtered_by_queue_and_name(
    client: BastionClient, runtime: Runtime, admin: Principal
) -> None:
    ids = [await runtime.jobs.enqueue(flaky, delay=3600) for _ in range(3)]
    with client.acting_as(admin):
        page = (await client.get(f"{API}/jobs", params={"name": "flaky", "limit": 2})).json()
        assert [job["id"] for job in page["data"]] == ids[::-1][:2]
        assert page["pagination"]["total_pages"] == 2
        other = (await client.get(f"{API}/jobs", params={"queue": "mail"})).json()
        assert other["data"] == []
        bad = await client.get(f"{API}/jobs", params={"status": "sleeping"})
        assert bad.status_code == 422


async def test_error_groups_and_client_logs_are_listed(
    client: BastionClient, runtime: Runtime, admin: Principal
) -> None:
    failed = [await client.get("/api/v1/boom") for _ in range(2)]
    sent = await client.post(
        "/api/v1/client-logs",
        json={"entries": [{"level": "error", "message": "oops", "request_id": "r-1"}]},
    )
    assert sent.status_code == 202
    await run_worker_until(runtime, lambda: job_row(runtime, 1).status == "succeeded")
    with client.acting_as(admin):
        groups = (await client.get(f"{API}/errors")).json()
        [group] = groups["data"]
        assert (group["code"], group["route"], group["count"]) == (
            "internal_error",
            "/api/v1/boom",
            2,
        )
        assert group["request_id"] == failed[-1].headers["x-request-id"]
        assert groups["pagination"]["total"] == 1
        later = utcnow() + timedelta(seconds=1)
        empty = await client.get(f"{API}/errors", params={"since": later.isoformat()})
        assert empty.json()["data"] == []
        naive = await client.get(f"{API}/errors", params={"since": "2000-01-01T00:00:00"})
        assert naive.json()["pagination"]["total"] == 1

        logs = (await client.get(f"{API}/client-logs", params={"level": "error"})).json()
        [log] = logs["data"]
        assert (log["message"], log["request_id"], log["client_ip"]) == ("oops", "r-1", "127.0.0.1")
        assert (await client.get(f"{API}/client-logs", params={"level": "info"})).json()[
            "data"
        ] == []


async def test_users_are_searched_by_text_role_and_ban(
    client: BastionClient, runtime: Runtime, admin: Principal
) -> None:
    ann = make_user(runtime, "ann@example.com", roles=["user"], name="Ann Smith")
    make_user(runtime, "bob@example.com", roles=["user"], name="Bob_Jones")
    await runtime.authenticator.set_banned(int(ann.id), True, actor_id=admin.id, reason="fraud")
    with client.acting_as(admin):

        async def emails(**params: Any) -> list[str]:
            response = await client.get(f"{API}/users", params=params)
            assert response.status_code == 200
            return [user["email"] for user in response.json()["data"]]

        assert await emails() == ["bob@example.com", "ann@example.com", "root@example.com"]
        assert await emails(q="SMITH") == ["ann@example.com"]
        assert await emails(q="bob_") == ["bob@example.com"]
        assert await emails(q="b_b") == []  # "_" is a character, not a wildcard
        assert await emails(role="admin") == ["root@example.com"]
        assert await emails(banned="true") == ["ann@example.com"]
        assert await emails(banned="false", role="user") == ["bob@example.com"]
        shown = (await client.get(f"{API}/users", params={"banned": "true"})).json()["data"][0]
        assert (shown["banned"], shown["ban_reason"], shown["roles"]) == (True, "fraud", ["user"])
        assert (await client.get(f"{API}/users", params={"role": "a b"})).status_code == 422

        log = (await client.get(f"{API}/audit-log", params={"target": f"user:{ann.id}"})).json()
        [entry] = log["data"]
        assert (entry["action"], entry["actor_id"], entry["reason"]) == (
            "user.ban",
            admin.id,
            "fraud",
        )
        by_prefix = await client.get(f"{API}/audit-log", params={"action": "user.*"})
        assert len(by_prefix.json()["data"]) == 1
        none = await client.get(f"{API}/audit-log", params={"actor": "someone-else"})
        assert none.json()["data"] == []


async def test_workflows_are_listed_by_status_and_name(
    client: BastionClient, runtime: Runtime, admin: Principal
) -> None:
    now = utcnow()
    with runtime.database.transaction() as session:
        for n, (name, status) in enumerate(
            [("checkout", "succeeded"), ("checkout", "failed"), ("refund", "running")]
        ):
            session.add(
                WorkflowRow(
                    id=f"wf-{n}",
                    name=name,
                    status=status,
                    args={},
                    created_at=now + timedelta(seconds=n),
                    updated_at=now,
                )
            )
    with client.acting_as(admin):
        every = (await client.get(f"{API}/workflows")).json()
        assert [w["id"] for w in every["data"]] == ["wf-2", "wf-1", "wf-0"]
        failed = await client.get(f"{API}/workflows", params={"status": "failed"})
        assert [w["id"] for w in failed.json()["data"]] == ["wf-1"]
        named = await client.get(f"{API}/workflows", params={"name": "checkout", "limit": 1})
        assert named.json()["pagination"]["total"] == 2
