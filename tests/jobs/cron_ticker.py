"""Run the ``minutely`` schedule's scheduler over simulated minutes, as fast as it can.

``python -m tests.jobs.cron_ticker DATABASE_URL START_ISO MINUTES``: one of several
racing processes in the cron test; each sees every simulated second of every minute.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta

from bastion.jobs.cron import Scheduler
from tests.jobs.cron_app import app


def main(url: str, start: str, minutes: int) -> None:
    runtime = app.runtime(app.load_settings(None, overrides={"database": {"url": url}}))
    clock = Scheduler(runtime.database, [app.jobs.schedules["minutely"]], grace_s=60)
    first = datetime.fromisoformat(start)
    try:
        for second in range(0, minutes * 60, 7):
            clock.tick(first + timedelta(seconds=second))
    finally:
        runtime.database.dispose()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
