"""Serve a target under yappi (CPU clock, every thread) and write where the CPU went.

``benchmarks/request_path.py --profile TARGET`` starts this in place of the uvicorn
command line, loads it like a measured run and stops it with SIGUSR2; on the way
out it writes the top functions by self and inclusive CPU time as JSON. SIGUSR1
clears what was recorded so far (the runner sends it after the warm-up); SIGUSR2
stops the server and writes the profile.

yappi rather than a sampling profiler: the request path is split between the
event loop and a worker thread, and on one pinned core the samplers tried here
(py-spy) could not tell a thread that waits from one that runs. yappi's CPU clock
charges each function only for the CPU its own thread spent. Being deterministic,
it inflates code that makes many small calls, so read the shares as a map of
where to look, and the unprofiled CPU µs/req as the cost.

Run: ``python -m benchmarks.profile_server --factory benchmarks.apps.bastion_app:create
--port 8000 --output profile.json``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

import uvicorn
import yappi

_ROOT = Path(__file__).resolve().parent.parent


def _where(module: str, line: int) -> str:
    for marker in ("site-packages/", f"{_ROOT}/src/", f"{_ROOT}/", "/lib/python3.11/"):
        if marker in module:
            return f"{module.split(marker, 1)[1]}:{line}"
    return f"{module}:{line}"


def collect(top: int) -> dict[str, Any]:
    """The top functions, all threads merged, as shares of the profiled CPU time."""
    stats = list(yappi.get_func_stats())
    total = sum(stat.tsub for stat in stats) or 1.0

    def rows(key: str) -> list[dict[str, Any]]:
        ordered = sorted(stats, key=lambda stat: getattr(stat, key), reverse=True)
        return [
            {
                "function": stat.name,
                "where": _where(stat.module, stat.lineno),
                "calls": stat.ncall,
                "share": round(getattr(stat, key) / total, 4),
            }
            for stat in ordered[:top]
        ]

    return {"cpu_seconds": round(total, 3), "self": rows("tsub"), "inclusive": rows("ttot")}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--factory", required=True, help="module:attr of the app factory")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("only loopback addresses")
    config = uvicorn.Config(
        args.factory,
        factory=True,
        host=args.host,
        port=args.port,
        workers=1,
        access_log=False,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    # SIGUSR1 forgets everything so far: the runner sends it after the warm-up, so
    # that start-up, imports and first-request costs stay out of the profile.
    signal.signal(signal.SIGUSR1, lambda _signum, _frame: yappi.clear_stats())

    # SIGUSR2 stops the server gently. Not SIGTERM: uvicorn re-raises a captured
    # SIGTERM after its shutdown, which would end the process before the profile
    # is written.
    def stop(_signum: int, _frame: Any) -> None:
        server.should_exit = True

    signal.signal(signal.SIGUSR2, stop)
    yappi.set_clock_type("cpu")
    # Started before the server so that the thread pool's workers, created lazily
    # on the first requests, are profiled too.
    yappi.start(builtins=False, profile_threads=True)
    try:
        server.run()
    finally:
        yappi.stop()
        args.output.write_text(json.dumps(collect(args.top), indent=2) + "\n")
    sys.exit(0)


if __name__ == "__main__":
    main()
