"""An app with two schedules, for the cron tests (kept apart so other job tests see no ticks)."""

from __future__ import annotations

from bastion import App, Context

app = App("crontests")


@app.cron("* * * * *")
def minutely(ctx: Context) -> None:
    """Fires every minute."""


@app.cron("0 2 * * *", catch_up="once")
def nightly(ctx: Context) -> None:
    """Runs once after downtime, however many nights were missed."""
