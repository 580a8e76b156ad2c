"""`make test`: the whole suite on SQLite, then the database tests again on PostgreSQL.

PostgreSQL (and Redis) tests skip with the reason on a machine without them; with
CI=true a missing service fails the run instead.
"""

from __future__ import annotations

import os
import subprocess
import sys

from bastion.testing import in_ci
from bastion.testing.databases import DEFAULT_POSTGRES_URL, postgres_unavailable_reason


def main() -> int:
    pytest = [sys.executable, "-m", "pytest", *sys.argv[1:]]
    print("== bastion tests on SQLite", flush=True)
    first = subprocess.call(pytest)
    if first != 0:
        return first
    url = os.environ.get("BASTION_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    reason = postgres_unavailable_reason(url)
    if reason is not None and not in_ci():
        print(f"== PostgreSQL pass skipped: {reason}", flush=True)
        return 0
    print("== bastion database tests on PostgreSQL", flush=True)
    env = {**os.environ, "BASTION_TEST_DATABASE": "postgres"}
    return subprocess.call([*pytest, "-m", "db"], env=env)


if __name__ == "__main__":
    raise SystemExit(main())
