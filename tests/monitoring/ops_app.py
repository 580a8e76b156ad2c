"""A small app for error groups, client logs and the operations API: functions that fail
on purpose, and a job whose failures a test switches on and off in the database."""

from __future__ import annotations

from sqlalchemy import select

from bastion import App, BastionError, Context
from bastion.db.tables import MetaEntry

#: While this meta key is set, ``flaky`` fails.
FAIL_KEY = "ops_app.fail"

app = App("ops")
app.use_auth()
client_log_purge = app.use_client_logs()
housekeeping = app.use_housekeeping()


@app.query("/boom")
def boom(ctx: Context) -> None:
    """Fails with a 500 (the error log records it)."""
    raise RuntimeError("boom")


@app.query("/items/{item_id}")
def clash(ctx: Context, item_id: int) -> None:
    """Fails with a 409 ``conflict``, logged when ``[errors] log_codes`` names it."""
    raise BastionError("conflict")


@app.job(queue="default", name="flaky", max_attempts=1)
def flaky(ctx: Context) -> str:
    if ctx.session.scalar(select(MetaEntry).where(MetaEntry.key == FAIL_KEY)) is not None:
        raise RuntimeError("flaky failed on purpose")
    return "done"
