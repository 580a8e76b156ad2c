"""Workflows: checkpointed steps, retries, compensation in reverse, durable sleep, children."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from sqlalchemy import func, select

from bastion import Principal, Runtime
from bastion.testing import BastionClient
from tests.jobs.conftest import eventually, run_until, start_worker
from tests.workflows.apps import (
    CALLS,
    UNDONE,
    Entry,
    checkout,
    gated,
    napper,
    parent,
    pay_by_card,
)


def ledger(runtime: Runtime, order: str) -> dict[str, int]:
    with runtime.database.read_transaction() as session:
        rows = session.execute(
            select(Entry.kind, func.count()).where(Entry.order == order).group_by(Entry.kind)
        ).all()
    return {kind: count for kind, count in rows}


def status(runtime: Runtime, workflow_id: str) -> str:
    timeline = runtime.workflows.get(workflow_id)
    assert timeline is not None
    return timeline.workflow.status


def steps(runtime: Runtime, workflow_id: str) -> list[tuple[str, str]]:
    timeline = runtime.workflows.get(workflow_id)
    assert timeline is not None
    return [(s.name, s.status) for s in timeline.steps]


async def test_a_started_workflow_runs_each_step_once(
    client: BastionClient, runtime: Runtime
) -> None:
    response = await client.post("/api/v1/orders", params={"order": "a"})
    assert response.status_code == 201
    workflow_id = response.json()
    again = await client.post("/api/v1/orders", params={"order": "a"})
    assert again.json() == workflow_id, "the id is the idempotency key"
    await run_until(runtime, lambda: status(runtime, workflow_id) == "succeeded")
    timeline = runtime.workflows.get(workflow_id)
    assert timeline is not None
    assert timeline.workflow.result == {
        "reserved": 7,
        "charge": {"charge_id": "ch_a", "key": f"{workflow_id}:1"},
        "order": "order-a",
    }
    assert steps(runtime, workflow_id) == [
        ("reserve", "succeeded"),
        ("charge", "succeeded"),
        ("record_order", "succeeded"),
    ]
    assert ledger(runtime, "a") == {"reserve": 1, "order": 1}
    assert len(runtime.jobs.store.list(name="bastion.workflow")) == 1


async def test_an_action_step_is_retried_by_its_policy(runtime: Runtime) -> None:
    with runtime.database.transaction() as session:
        workflow_id = checkout.start(session, order="r", charge_failures=2)
    await run_until(runtime, lambda: status(runtime, workflow_id) == "succeeded")
    assert CALLS["charge:r"] == 3
    timeline = runtime.workflows.get(workflow_id)
    assert timeline is not None
    assert timeline.steps[1].attempts == 3


async def test_a_step_failing_for_good_compensates_completed_steps_in_reverse(
    runtime: Runtime,
) -> None:
    with runtime.database.transaction() as session:
        workflow_id = checkout.start(session, order="f", refuse_order=True)
    await run_until(runtime, lambda: status(runtime, workflow_id) == "compensated")
    assert UNDONE == ["refund", "release"]
    assert ledger(runtime, "f") == {"reserve": 1}, "the refused step's write rolled back"
    assert ledger(runtime, "released-7") == {"release": 1}
    timeline = runtime.workflows.get(workflow_id)
    assert timeline is not None
    assert timeline.workflow.error_code == "conflict"
    assert [name for name, _ in steps(runtime, workflow_id)] == [
        "reserve",
        "charge",
        "compensate:charge",
        "compensate:reserve",
    ]


async def test_retries_spent_fail_the_workflow_and_compensate(runtime: Runtime) -> None:
    with runtime.database.transaction() as session:
        workflow_id = checkout.start(session, order="x", charge_failures=10)
    await run_until(runtime, lambda: status(runtime, workflow_id) == "compensated")
    assert CALLS["charge:x"] == 3
    assert UNDONE == ["release"], "the charge never succeeded, so nothing to refund"


async def test_an_inline_run_returns_its_result_or_raises_the_step_error(
    client: BastionClient, runtime: Runtime
) -> None:
    ok = await client.post("/api/v1/orders/inline", params={"order": "i"})
    assert ok.status_code == 200
    assert ok.json()["order"] == "order-i"
    replay = await client.post("/api/v1/orders/inline", params={"order": "i"})
    assert replay.json() == ok.json()
    assert ledger(runtime, "i") == {"reserve": 1, "order": 1}, "the replay ran nothing again"
    refused = await client.post(
        "/api/v1/orders/inline", params={"order": "j", "refuse_order": "true"}
    )
    assert refused.status_code == 409
    assert refused.json()["code"] == "conflict"
    assert status(runtime, "inline:j") == "compensated"


async def test_a_durable_sleep_survives_between_runs(runtime: Runtime) -> None:
    with runtime.database.transaction() as session:
        workflow_id = napper.start(session, order="s", seconds=0.4)
    await run_until(runtime, lambda: status(runtime, workflow_id) == "sleeping")
    assert ledger(runtime, "s") == {"reserve": 1}
    await run_until(runtime, lambda: status(runtime, workflow_id) == "succeeded")
    assert ledger(runtime, "s") == {"reserve": 1, "order": 1}
    assert [name for name, _ in steps(runtime, workflow_id)] == ["reserve", "sleep", "record_order"]


async def test_a_child_workflow_has_a_deterministic_id_and_its_result_flows_back(
    runtime: Runtime,
) -> None:
    with runtime.database.transaction() as session:
        workflow_id = parent.start(session, order="p")
    await run_until(runtime, lambda: status(runtime, workflow_id) == "succeeded")
    child = runtime.workflows.get(f"{workflow_id}/0")
    assert child is not None
    assert child.workflow.parent_id == workflow_id
    timeline = runtime.workflows.get(workflow_id)
    assert timeline is not None
    assert timeline.workflow.result == child.workflow.result
    assert ledger(runtime, "p-child") == {"reserve": 1, "order": 1}


async def test_status_is_visible_to_the_owner_and_admins_only(
    client: BastionClient, runtime: Runtime
) -> None:
    owner, stranger = Principal("1"), Principal("2")
    admin = Principal("3", permissions=frozenset({"write:all"}))
    with client.acting_as(owner):
        started = await client.post("/api/v1/orders", params={"order": "v"})
        workflow_id = started.json()
        seen = await client.get(f"/api/v1/workflows/{workflow_id}")
    assert seen.status_code == 200
    assert seen.json()["status"] == "pending"
    with client.acting_as(stranger):
        assert (await client.get(f"/api/v1/workflows/{workflow_id}")).status_code == 404
    with client.acting_as(admin):
        assert (await client.get(f"/api/v1/workflows/{workflow_id}")).status_code == 200
    assert (await client.get(f"/api/v1/workflows/{workflow_id}")).status_code == 401


async def test_a_workflow_killed_between_steps_resumes_without_repeating_them(
    runtime: Runtime, bastion_database_url: str, tmp_path: Path
) -> None:
    gate_file = tmp_path / "open"
    with runtime.database.transaction() as session:
        workflow_id = gated.start(session, order="k", path=str(gate_file))

    def gated_worker() -> subprocess.Popen[bytes]:
        return start_worker(bastion_database_url, app="tests.workflows.apps:app", lease_s="1")

    first = gated_worker()
    try:
        await eventually(lambda: ledger(runtime, "k") == {"reserve": 1}, limit_s=20)
        first.send_signal(signal.SIGKILL)
    finally:
        first.wait()
    gate_file.touch()
    second = gated_worker()
    try:
        await eventually(lambda: status(runtime, workflow_id) == "succeeded", limit_s=20)
    finally:
        second.terminate()
        second.wait()
    assert ledger(runtime, "k") == {"reserve": 1, "order": 1}, "reserve ran once"


async def test_a_client_error_declared_by_the_app_is_not_retried(runtime: Runtime) -> None:
    with runtime.database.transaction() as session:
        workflow_id = pay_by_card.start(session, order="c")
    await run_until(runtime, lambda: status(runtime, workflow_id) == "compensated")
    assert CALLS["card:c"] == 1, "402 card_refused is an answer, not a failure"
    timeline = runtime.workflows.get(workflow_id)
    assert timeline is not None
    assert timeline.workflow.error_code == "card_refused"


async def test_a_compensation_that_fails_for_good_is_resumed_until_it_is_done(
    runtime: Runtime,
) -> None:
    CALLS["refund-failures:ch_z"] = 3  # one whole pass of the step policy (3 attempts)
    with runtime.database.transaction() as session:
        workflow_id = checkout.start(session, order="z", refuse_order=True)
    await run_until(runtime, lambda: status(runtime, workflow_id) == "compensated", limit_s=20)
    assert UNDONE == ["refund", "release"], "still in reverse order across the passes"
    assert UNDONE.count("refund") == 1
    assert UNDONE.count("release") == 1, "the release compensation ran once, not per pass"
    (runner,) = runtime.jobs.store.list(name="bastion.workflow")
    assert runner.attempts == 2, "the first pass failed; the runner job came back"


async def test_functions_see_the_requests_idempotency_key(client: BastionClient) -> None:
    keyed = await client.post("/api/v1/keyed", headers={"Idempotency-Key": "order-77"})
    assert keyed.json() == "order-77"
    assert (await client.post("/api/v1/keyed")).json() is None
