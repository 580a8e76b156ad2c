"""A small app for alert tests: an endpoint that fails, one that works, a job that dies."""

from __future__ import annotations

from bastion import App, Context

app = App("alerting")
app.use_auth()
#: The ``bastion.alerts`` cron job.
alerts = app.use_alerts()


class Broken(Exception):
    """What the failing endpoint and job raise."""


@app.query("/boom")
def boom(ctx: Context) -> dict[str, str]:
    raise Broken("the endpoint fails on purpose")


@app.query("/fine")
def fine(ctx: Context) -> dict[str, str]:
    return {"status": "fine"}


@app.job(queue="default", max_attempts=1)
def doomed(ctx: Context) -> None:
    raise Broken("the job fails on purpose")
