"""The console's workflow timeline: steps in order, then the compensations that undid them."""

from __future__ import annotations

import re

import pytest

from bastion import App, Conflict, Context, Retry, Runtime
from bastion.auth import create_user
from bastion.testing import BastionClient, run_worker_until, workflow_is
from bastion.workflows import WorkflowRun

PASSWORD = "correct horse battery staple"
app = App("consolewf")
app.use_auth()


def reserve(ctx: Context) -> int:
    return 7


def release(ctx: Context, output: int) -> None:
    del output


def refuse(ctx: Context) -> None:
    raise Conflict(detail="out of stock")


@app.workflow(step_retry=Retry(max_attempts=1))
async def order(wf: WorkflowRun) -> None:
    await wf.step(reserve, compensate=release)
    await wf.step(refuse)


@pytest.fixture
def bastion_app() -> App:
    return app


async def test_a_compensated_run_shows_its_steps_then_its_compensations(
    runtime: Runtime,
) -> None:
    with runtime.database.transaction() as session:
        create_user(
            session, runtime.passwords, email="ops@example.com", password=PASSWORD, roles=["admin"]
        )
        workflow_id = order.start(session)
    await run_worker_until(runtime, workflow_is(runtime, workflow_id, "compensated"))
    async with BastionClient(runtime.asgi()) as admin:
        await admin.sign_in("ops@example.com", PASSWORD)
        runs = await admin.get("/console/workflows?status=compensated")
        assert f'href="/console/workflows/{workflow_id}"' in runs.text
        page = await admin.get(f"/console/workflows/{workflow_id}")
    assert page.status_code == 200
    names = re.findall(r"<strong>([^<]+)</strong>", page.text)
    # A step that failed for good keeps no checkpoint; the run records its error.
    assert names == ["reserve", "compensate:reserve"]
    assert page.text.count("step step-compensation") == 1
    assert "conflict" in page.text
