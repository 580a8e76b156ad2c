"""Email as a job: sent through a real SMTP server, retried when it is down, dead when refused."""

from __future__ import annotations

from typing import Any

import pytest

from bastion import App, Runtime
from bastion.testing.plugin import RuntimeFactory
from tests.jobs.conftest import job, run_until, status_is
from tests.jobs.mail_app import app
from tests.support.smtp import SmtpTestServer


@pytest.fixture
def bastion_app() -> App:
    return app


@pytest.fixture
def bastion_settings_overrides() -> dict[str, Any]:
    return {"jobs": {"poll_interval_s": 0.05}}


def mail_runtime(make_runtime: RuntimeFactory, **mail: Any) -> Runtime:
    return make_runtime(mail={"smtp_port": 1, "timeout_s": 2, **mail})


async def enqueue_hello(runtime: Runtime, to: str) -> int:
    assert app.send_email is not None
    return await runtime.jobs.enqueue(
        app.send_email, template="hello", to=[to], context={"name": "Ada"}
    )


async def test_a_templated_email_is_sent_by_a_job(
    make_runtime: RuntimeFactory, smtp_server: SmtpTestServer
) -> None:
    runtime = mail_runtime(make_runtime, **smtp_server.settings())
    job_id = await enqueue_hello(runtime, "ada@example.com")
    await run_until(runtime, status_is(runtime, job_id, "succeeded"))
    (message,) = smtp_server.messages()
    assert message["Subject"] == "Hello Ada"
    assert message["Message-ID"] == job(runtime, job_id).result
    assert message["Message-ID"].startswith(f"<job-{job_id}.")


async def test_a_refused_recipient_kills_the_job_at_once(
    make_runtime: RuntimeFactory, smtp_server: SmtpTestServer
) -> None:
    runtime = mail_runtime(make_runtime, **smtp_server.settings())
    job_id = await enqueue_hello(runtime, "unknown@example.com")
    await run_until(runtime, status_is(runtime, job_id, "dead"))
    row = job(runtime, job_id)
    assert row.attempts == 1
    assert "MailPermanentError" in (row.last_error or "")


async def test_an_unreachable_server_is_retried_later(make_runtime: RuntimeFactory) -> None:
    runtime = mail_runtime(make_runtime, backend="smtp", smtp_host="127.0.0.1", smtp_port=1)
    job_id = await enqueue_hello(runtime, "ada@example.com")
    await run_until(
        runtime,
        lambda: job(runtime, job_id).attempts == 1 and job(runtime, job_id).status == "queued",
    )
    row = job(runtime, job_id)
    assert "MailTemporaryError" in (row.last_error or "")
    assert row.run_at > row.created_at, "rescheduled with backoff"
