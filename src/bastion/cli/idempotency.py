"""``bastion idempotency``: housekeeping of stored idempotency keys.

Run ``purge`` from cron (hourly is plenty) until bastion's own scheduler (#4)
takes the job over. Expired records are already ignored by requests; purging
only reclaims their space.
"""

from __future__ import annotations

from datetime import UTC, datetime

import typer

from bastion.cli.discovery import AppArgument, ConfigOption, locate
from bastion.cli.output import reporting, stdout

group = typer.Typer(
    name="idempotency", help="Manage stored idempotency keys.", no_args_is_help=True
)


@group.command("purge")
def purge(app: AppArgument = None, config: ConfigOption = None) -> None:
    """Delete every idempotency record past its expiry (``idempotency.ttl_s``)."""
    with reporting():
        runtime = locate(app, config).runtime()
        try:
            purged = runtime.idempotency.purge_expired(datetime.now(UTC))
        finally:
            runtime.database.dispose()
        stdout().print(f"purged {purged} expired idempotency {'key' if purged == 1 else 'keys'}")
