"""``bastion auth``: housekeeping of stored credentials.

Run ``purge`` from cron (daily is plenty) until bastion's own scheduler (#4) takes
the job over. Expired sessions and refresh tokens are already refused when
presented; purging only reclaims their space.
"""

from __future__ import annotations

from datetime import UTC, datetime

import typer

from bastion.auth.sessions import DatabaseSessionStore
from bastion.auth.tokens import Tokens
from bastion.cli.discovery import AppArgument, ConfigOption, locate
from bastion.cli.output import reporting, stdout

group = typer.Typer(name="auth", help="Manage stored sessions and tokens.", no_args_is_help=True)


@group.command("purge")
def purge(app: AppArgument = None, config: ConfigOption = None) -> None:
    """Delete expired database sessions and expired refresh tokens."""
    with reporting():
        runtime = locate(app, config).runtime()
        now = datetime.now(UTC)
        try:
            sessions = DatabaseSessionStore(runtime.database).purge_expired(now)
            with runtime.database.transaction() as session:
                tokens = Tokens.purge_expired(session, now)
        finally:
            runtime.database.dispose()
        stdout().print(f"purged {sessions} expired sessions and {tokens} expired refresh tokens")
