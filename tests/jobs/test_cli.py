"""``bastion jobs``: list, show, cancel, retry and purge from the command line."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from bastion import Runtime
from bastion.cli.main import cli
from tests.jobs.apps import hopeless, record
from tests.jobs.conftest import job

APP = "tests.jobs.apps:app"


@pytest.fixture
def bastion_cli(monkeypatch: pytest.MonkeyPatch, bastion_database_url: str) -> CliRunner:
    monkeypatch.setenv("BASTION_DATABASE_URL", bastion_database_url)
    monkeypatch.setenv("BASTION_LOG_LEVEL", "WARNING")
    return CliRunner()


async def test_list_show_cancel_retry_and_purge(runtime: Runtime, bastion_cli: CliRunner) -> None:
    queued = await runtime.jobs.enqueue(record, key="cli")
    other = await runtime.jobs.enqueue(hopeless, key="cli-2")

    listed = bastion_cli.invoke(cli, ["jobs", "ls", APP, "--status", "queued"])
    assert listed.exit_code == 0, listed.output
    assert "record@v1" in listed.output
    assert "default/queued: 2" in listed.output

    shown = bastion_cli.invoke(cli, ["jobs", "show", str(queued), APP])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["args"] == {"key": "cli"}

    cancelled = bastion_cli.invoke(cli, ["jobs", "cancel", str(queued), APP])
    assert cancelled.exit_code == 0, cancelled.output
    assert job(runtime, queued).status == "cancelled"

    retried = bastion_cli.invoke(cli, ["jobs", "retry", str(queued), str(other), APP])
    assert retried.exit_code != 0, "the queued one cannot be retried"
    assert "retried 1 of 2" in retried.output
    assert f"not retried: {other}" in retried.output
    assert job(runtime, queued).status == "queued"

    purged = bastion_cli.invoke(cli, ["jobs", "purge", APP])
    assert purged.exit_code == 0, purged.output
    assert "purged 0 finished jobs" in purged.output


async def test_bad_input_is_refused_clearly(runtime: Runtime, bastion_cli: CliRunner) -> None:
    bad_status = bastion_cli.invoke(cli, ["jobs", "ls", APP, "--status", "exploded"])
    assert bad_status.exit_code != 0
    assert "unknown status" in bad_status.output
    missing = bastion_cli.invoke(cli, ["jobs", "show", "999", APP])
    assert missing.exit_code != 0
    assert "no job 999" in missing.output
    unknown_queue = bastion_cli.invoke(cli, ["worker", APP, "--queue", "nope"])
    assert unknown_queue.exit_code != 0
    assert "no job is declared on queue(s) nope" in unknown_queue.output
