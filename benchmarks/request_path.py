"""Request-path benchmark: ``GET /api/v1/products/{id}`` through bastion and three peers.

Run from the repository root::

    .venv/bin/python benchmarks/request_path.py [--duration 10] [--reps 3] [--connections 16]

For each repetition, for each target (the order rotates every repetition so that
slow drift on a shared machine spreads over all targets), the runner starts the
server under uvicorn with one worker pinned to CPU 0, waits until it answers,
warms it up, loads it from CPU 1 for ``--duration`` seconds and stops it. The
medians over repetitions, with ratios, go to benchmarks/results/request_path.json
and request_path.md. See benchmarks/README.md for how to read them.

Only loopback addresses are used, every child runs in its own process group, and
every group is killed on the way out, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import http.client
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
RESULTS = BENCH / "results"
LUA = BENCH / "wrk" / "products.lua"
HOST = "127.0.0.1"  # loopback only, by rule: never point this at another address
SERVER_CPU = "0"
LOAD_CPU = "1"
# The benchmark's own secret, for the bastion app and peer (b)'s JWT check. It
# guards nothing: a fixed value keeps runs reproducible.
SECRET = "bench-secret-0123456789abcdef0123456789abcdef"
VERSIONS = (
    "bastion",
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "sqlalchemy",
    "pydantic",
    "pydantic-core",
    "structlog",
    "slowapi",
    "limits",
    "prometheus-client",
    "pyjwt",
    "anyio",
    "httpx",
)


@dataclass(frozen=True)
class Target:
    """One server configuration to measure.

    ``bastion`` targets get bastion's production settings; ``env`` is applied after
    every default, to the server and the load generator alike (a ``BASTION_*``
    override, or a ``BENCH_*`` option of the wrk script). ``bearer`` says whether
    the run's bearer token is sent: bastion verifies any it gets, so its anonymous
    target sends none. ``path_suffix``, ``method`` and ``idempotency_key`` shape the
    request: ``/api/v1/products/{id}<suffix>``, with a fresh ``Idempotency-Key`` on
    every request when asked.
    """

    key: str
    label: str
    factory: str
    access_log: bool  # writes one log line per request to its log file
    bastion: bool = False
    bearer: bool = True
    env: tuple[tuple[str, str], ...] = ()
    method: str = "GET"
    path_suffix: str = ""
    idempotency_key: bool = False

    @property
    def short(self) -> str:
        return self.label.split(":")[0]


TARGETS = (
    # Anonymous, as in #2: the peers' bench token is not a bastion token, and bastion
    # answers 401 to a bearer token it cannot verify. The authenticated path is
    # measured against this one by benchmarks/auth_path.py.
    Target(
        "bastion",
        "bastion",
        "benchmarks.apps.bastion_app:create",
        True,
        bastion=True,
        bearer=False,
    ),
    Target("fastapi_orm", "(a): FastAPI + ORM", "benchmarks.peers.fastapi_orm:create", False),
    Target(
        "fastapi_plugins",
        "(b): (a) + plugins, pure ASGI",
        "benchmarks.peers.fastapi_plugins:create",
        True,
    ),
    Target(
        "fastapi_plugins_bhm",
        "(b-bhm): (b) with BaseHTTPMiddleware",
        "benchmarks.peers.fastapi_plugins:create_bhm",
        True,
    ),
    Target(
        "starlette_raw", "(c): Starlette + sqlite3", "benchmarks.peers.starlette_raw:create", False
    ),
)
BY_KEY = {target.key: target for target in TARGETS}
RATIOS = (
    ("bastion", "fastapi_orm"),
    ("bastion", "fastapi_plugins"),
    ("bastion", "fastapi_plugins_bhm"),
    ("bastion", "starlette_raw"),
)


# --- child processes --------------------------------------------------------------------

_children: set[subprocess.Popen[bytes]] = set()


def _kill(process: subprocess.Popen[bytes]) -> None:
    """Stop a child's whole process group: SIGTERM, then SIGKILL after 5 s."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
    _children.discard(process)


def _kill_all() -> None:
    for process in list(_children):
        _kill(process)


def _on_signal(signum: int, _frame: Any) -> None:
    # Turn SIGTERM/SIGHUP into the same unwinding as Ctrl-C, so finally blocks run.
    raise KeyboardInterrupt(f"signal {signum}")


def _spawn(
    command: list[str], *, env: dict[str, str], stdout: Any, stderr: Any
) -> subprocess.Popen[bytes]:
    # A session of its own: Ctrl-C reaches only this runner, which then stops the
    # group explicitly, and killpg reaches grandchildren too.
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=stdout, stderr=stderr, start_new_session=True
    )
    _children.add(process)
    return process


def _run_bounded(command: list[str], *, env: dict[str, str], timeout: float) -> str:
    """Run a child to completion within ``timeout`` seconds; returns its standard output."""
    process = _spawn(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(process)
        raise RuntimeError(f"timed out after {timeout:.0f} s: {' '.join(command)}") from None
    finally:
        _kill(process)
    if process.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited {process.returncode}:\n"
            f"{(out + err).decode(errors='replace')[-2000:]}"
        )
    return out.decode()


def _bench_json(output: str) -> Any:
    for line in output.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line.removeprefix("BENCH_JSON "))
    raise RuntimeError(f"no BENCH_JSON line in output:\n{output[-2000:]}")


# --- environment ------------------------------------------------------------------------


def _pinning() -> bool:
    try:
        cpus = os.sched_getaffinity(0)
    except AttributeError:
        return False
    return shutil.which("taskset") is not None and {0, 1} <= cpus


def _pinned(cpu: str, command: list[str], pin: bool) -> list[str]:
    return ["taskset", "-c", cpu, *command] if pin else command


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _token() -> str:
    import jwt

    now = int(time.time())
    return str(
        jwt.encode({"sub": "bench", "iat": now, "exp": now + 6 * 3600}, SECRET, algorithm="HS256")
    )


def _child_env(
    workdir: Path, db: Path, target: Target | None, token: str, products: int, log_file: Path | None
) -> dict[str, str]:
    if target is not None and not target.bearer:
        token = ""
    # Start from the caller's environment minus every BASTION_* variable, so a
    # developer's own settings cannot leak into a measurement.
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env.update(
        {
            "BENCH_DB": str(db),
            "BENCH_JWT_SECRET": SECRET,
            "BENCH_TOKEN": token,
            "BENCH_PRODUCTS": str(products),
            "BENCH_SEED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "BENCH_LOG_FILE": str(log_file or workdir / "scratch.log"),
        }
    )
    if target is not None and target.bastion:
        env.update(
            {
                "BASTION_ENV": "production",
                "BASTION_APP_SECRET_KEY": SECRET,
                "BASTION_DATABASE_URL": f"sqlite:///{db}",
                "BASTION_LOG_FORMAT": "json",
                "BASTION_LOG_FILE": str(log_file or workdir / "scratch.log"),
                "BASTION_LOG_ACCESS_LOG": "true",
                "BASTION_LOG_LEVEL": "INFO",
                # Limiting stays on (its cost is part of the path); the limit is set high
                # enough that the load generator's one address is never refused.
                "BASTION_RATELIMIT_DEFAULT_LIMITS": '["100000000/minute"]',
            }
        )
    if target is not None:
        env.update(
            {
                "BENCH_METHOD": target.method,
                "BENCH_PATH_SUFFIX": target.path_suffix,
                "BENCH_IDEMPOTENCY_KEY": "1" if target.idempotency_key else "",
            }
        )
        env.update(dict(target.env))
    return env


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    import sqlite3

    cpu_model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for name in VERSIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    wrk = shutil.which("wrk")
    wrk_version = None
    if wrk:
        probe = subprocess.run(
            [wrk, "--version"], capture_output=True, text=True, timeout=5, check=False
        )
        wrk_version = (probe.stdout + probe.stderr).splitlines()[0].strip()
    git: dict[str, Any] = {}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            timeout=5,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "src"],
            cwd=ROOT,
            timeout=5,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.splitlines()
        git = {"head": head, "changed_files_under_src": len(dirty)}
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
        "wrk": wrk_version,
        "versions": versions,
        "git": git,
    }


# --- one server run ---------------------------------------------------------------------


def request_headers(env: Mapping[str, str]) -> dict[str, str]:
    """The headers every request of a run carries, as the wrk script builds them."""
    headers = {"Accept": "application/json"}
    if env.get("BENCH_TOKEN"):
        headers["Authorization"] = f"Bearer {env['BENCH_TOKEN']}"
    if env.get("BENCH_API_KEY"):
        headers["X-API-Key"] = env["BENCH_API_KEY"]
    return headers


def _get(
    port: int,
    path: str,
    headers: Mapping[str, str],
    timeout: float = 2.0,
    method: str = "GET",
) -> tuple[int, bytes, dict[str, str]]:
    """One request; the status, the body and the response headers (names lowercased)."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request(method, path, body=b"" if method != "GET" else None, headers=headers)
        response = connection.getresponse()
        return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()


def _wait_ready(
    process: subprocess.Popen[bytes],
    port: int,
    headers: Mapping[str, str],
    log: Path,
    deadline_s: float = 30.0,
) -> int:
    """Poll the measured route until it answers 200; returns the number of polls."""
    deadline = time.monotonic() + deadline_s
    polls = 0
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{_tail(log)}")
        polls += 1
        with contextlib.suppress(OSError, http.client.HTTPException):
            if _get(port, "/api/v1/products/1", headers, timeout=1.0)[0] == 200:
                return polls
        time.sleep(0.1)
    raise RuntimeError(f"server not ready after {deadline_s:.0f} s:\n{_tail(log)}")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load(
    port: int,
    *,
    seconds: float,
    args: argparse.Namespace,
    env: dict[str, str],
    generator: str,
    pin: bool,
) -> dict[str, Any]:
    url = f"http://{HOST}:{port}"
    if generator == "python" and (
        env.get("BENCH_METHOD", "GET") != "GET" or env.get("BENCH_API_KEY")
    ):
        raise RuntimeError("the Python load generator only sends GET with a bearer token: use wrk")
    if generator == "wrk":
        # wrk takes whole seconds only.
        command = [
            "wrk",
            "-t1",
            f"-c{args.connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "5s",
            "-s",
            str(LUA),
            url,
        ]
    else:
        command = [
            sys.executable,
            "-m",
            "benchmarks.loadgen",
            "--url",
            url,
            "--duration",
            str(seconds),
            "--connections",
            str(args.connections),
            "--products",
            str(args.products),
            "--token",
            env["BENCH_TOKEN"],
        ]
    result: dict[str, Any] = _bench_json(
        _run_bounded(_pinned(LOAD_CPU, command, pin), env=env, timeout=seconds + 60)
    )
    return result


def run_target(
    target: Target,
    *,
    rep: int,
    db: Path,
    workdir: Path,
    token: str,
    args: argparse.Namespace,
    generator: str,
    pin: bool,
    profile: bool = False,
) -> dict[str, Any]:
    """Start ``target``, warm it up, measure it (or profile it) and stop it."""
    port = _free_port()
    log_file = workdir / f"{target.key}-{rep}.log"
    server_out = workdir / f"{target.key}-{rep}.server.txt"
    env = _child_env(workdir, db, target, token, args.products, log_file)
    headers = request_headers(env)
    profile_file = workdir / f"profile-{target.key}.json"
    if profile:
        command = [
            sys.executable,
            "-m",
            "benchmarks.profile_server",
            "--factory",
            target.factory,
            "--host",
            HOST,
            "--port",
            str(port),
            "--output",
            str(profile_file),
        ]
    else:
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            target.factory,
            "--host",
            HOST,
            "--port",
            str(port),
            "--workers",
            "1",
            "--no-access-log",
            "--log-level",
            "warning",
            "--timeout-graceful-shutdown",
            "3",
        ]
    with server_out.open("wb") as out:
        server = _spawn(
            _pinned(SERVER_CPU, command, pin), env=env, stdout=out, stderr=subprocess.STDOUT
        )
    profile_result = None
    try:
        polls = _wait_ready(server, port, headers, server_out)
        sample_headers = dict(headers)
        if target.idempotency_key:
            sample_headers["Idempotency-Key"] = f"sample-{target.key}-{rep}-{time.time_ns()}"
        status, body, response_headers = _get(
            port,
            f"/api/v1/products/42{target.path_suffix}",
            sample_headers,
            method=target.method,
        )
        warm = _load(port, seconds=args.warmup, args=args, env=env, generator=generator, pin=pin)
        if profile:
            os.kill(server.pid, signal.SIGUSR1)
        load_before = os.getloadavg()[0]
        cpu_before = _cpu_seconds(server.pid)
        measured = _load(
            port, seconds=args.duration, args=args, env=env, generator=generator, pin=pin
        )
        cpu = _cpu_seconds(server.pid) - cpu_before
        if profile:
            # The profile is written on the way out: stop gently and give it time.
            os.kill(server.pid, signal.SIGUSR2)
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(timeout=60)
            if profile_file.exists():
                profile_result = json.loads(profile_file.read_text())
    finally:
        _kill(server)
    requests = measured["requests"]
    seconds = measured["duration_us"] / 1e6
    log_lines = None
    if target.access_log and log_file.exists():
        with log_file.open(errors="replace") as lines:
            log_lines = sum(1 for line in lines if '"event": "request"' in line)
    served = polls + 1 + warm["requests"] + requests
    return {
        "rep": rep,
        "target": target.key,
        "requests": requests,
        "seconds": round(seconds, 3),
        "req_per_s": round(requests / seconds, 1),
        "p50_ms": round(measured["p50_us"] / 1000, 3),
        "p90_ms": round(measured["p90_us"] / 1000, 3),
        "p99_ms": round(measured["p99_us"] / 1000, 3),
        "max_ms": round(measured["max_us"] / 1000, 3),
        "non2xx": measured["non2xx"],
        "socket_errors": sum(
            measured[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts")
        ),
        "server_cpu_us_per_req": round(cpu / requests * 1e6, 1) if requests else None,
        "server_cpu_share": round(cpu / seconds, 3),
        "access_log_lines": log_lines,
        "requests_served_total": served,
        "sample_status": status,
        "sample_body": body.decode(errors="replace"),
        "sample_headers": list(response_headers),
        "sample_header_values": response_headers,
        "loadavg_1m_before": round(load_before, 2),
        "profile": profile_result,
    }


# --- summary ----------------------------------------------------------------------------


def summarize(runs: list[dict[str, Any]], keys: list[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for key in keys:
        mine = [r for r in runs if r["target"] == key]
        if not mine:
            continue
        rps = [r["req_per_s"] for r in mine]
        summary[key] = {
            "reps": len(mine),
            "req_per_s": round(statistics.median(rps), 1),
            "req_per_s_min": min(rps),
            "req_per_s_max": max(rps),
            "p50_ms": round(statistics.median(r["p50_ms"] for r in mine), 3),
            "p99_ms": round(statistics.median(r["p99_ms"] for r in mine), 3),
            "server_cpu_us_per_req": round(
                statistics.median(
                    r["server_cpu_us_per_req"] for r in mine if r["server_cpu_us_per_req"]
                ),
                1,
            ),
            "non2xx": sum(r["non2xx"] for r in mine),
            "socket_errors": sum(r["socket_errors"] for r in mine),
        }
    return summary


def ratios(
    summary: dict[str, Any], pairs: tuple[tuple[str, str], ...] = RATIOS
) -> list[dict[str, Any]]:
    """``mine/base`` for each pair present: req/s, p50, p99 and CPU per request."""
    out = []
    for mine, base in pairs:
        if mine in summary and base in summary:
            a, b = summary[mine], summary[base]
            out.append(
                {
                    "ratio": f"{mine}/{base}",
                    "req_per_s": round(a["req_per_s"] / b["req_per_s"], 3),
                    "p50": round(a["p50_ms"] / b["p50_ms"], 3),
                    "p99": round(a["p99_ms"] / b["p99_ms"], 3),
                    "cpu_per_req": round(
                        a["server_cpu_us_per_req"] / b["server_cpu_us_per_req"], 3
                    ),
                }
            )
    return out


# --- the runner shared with auth_path.py -----------------------------------------------

RunOne = Callable[[str, int, bool], dict[str, Any]]
"""``run(target key, repetition, profile)``: start the target, measure or profile it, stop it."""


def add_common_arguments(parser: argparse.ArgumentParser, keys: list[str]) -> None:
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="discarded seconds per run")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument(
        "--targets", default=",".join(keys), help=f"comma-separated subset of: {', '.join(keys)}"
    )
    parser.add_argument(
        "--profile",
        default="",
        help="comma-separated targets to profile after measuring (yappi, "
        "benchmarks/profile_server.py)",
    )


def selected_targets(
    parser: argparse.ArgumentParser, args: argparse.Namespace, known: Mapping[str, Any]
) -> tuple[list[str], list[str]]:
    """The ``--targets`` to measure and the ``--profile`` ones, checked against ``known``."""
    keys = [k.strip() for k in args.targets.split(",") if k.strip()]
    unknown = [k for k in keys if k not in known]
    if unknown or not keys:
        parser.error(f"unknown targets {unknown}; choose from {', '.join(known)}")
    profile_keys = [k.strip() for k in args.profile.split(",") if k.strip()]
    if any(k not in known for k in profile_keys):
        parser.error(f"unknown --profile target; choose from {', '.join(known)}")
    if profile_keys and importlib.util.find_spec("yappi") is None:
        parser.error("--profile needs yappi: .venv/bin/pip install yappi")
    return keys, profile_keys


def measure(
    keys: list[str],
    reps: int,
    run: RunOne,
    suffix: Callable[[dict[str, Any]], str] | None = None,
) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """Every target once per repetition, the order rotated each time, so that slow drift on
    a shared machine spreads over all targets. Returns the runs and the orders used."""
    runs: list[dict[str, Any]] = []
    orders: list[list[str]] = []
    for rep in range(reps):
        order = keys[rep % len(keys) :] + keys[: rep % len(keys)]
        orders.append(order)
        for key in order:
            result = run(key, rep + 1, False)
            result.pop("profile")
            runs.append(result)
            print(
                f"rep {rep + 1} {key:<20} {result['req_per_s']:>8.0f} req/s  "
                f"p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms  "
                f"cpu {result['server_cpu_us_per_req']} µs/req  non-2xx {result['non2xx']}"
                f"{suffix(result) if suffix else ''}",
                flush=True,
            )
    return runs, orders


def profile_targets(keys: list[str], run: RunOne) -> dict[str, Any]:
    """Profile each target once (after measuring, so profiling never skews a measurement)."""
    profiles: dict[str, Any] = {}
    for key in keys:
        print(f"profiling {key} ...", flush=True)
        result = run(key, 0, True)
        if result["profile"] is None:
            print(f"no profile written for {key}", file=sys.stderr)
            continue
        profiles[key] = result["profile"]
        profiles[key]["req_per_s_while_profiled"] = result["req_per_s"]
        profiles[key]["requests_profiled"] = result["requests"]
    return profiles


# --- report -----------------------------------------------------------------------------


def write_markdown(result: dict[str, Any], path: Path) -> None:
    machine = result["machine"]
    method = result["method"]
    summary = result["summary"]
    wrk_version = f" ({machine['wrk']})" if method["load_generator"] == "wrk" else ""
    lines = [
        "# Request-path benchmark: `GET /api/v1/products/{id}`",
        "",
        f"Measured {result['date']} by `benchmarks/request_path.py` "
        f"(generated file: rerun the script rather than editing it).",
        "",
        "## Machine",
        "",
        "| | |",
        "| --- | --- |",
        f"| CPUs (nproc) | {machine['nproc']} |",
        f"| CPU model | {machine['cpu_model']} |",
        f"| platform | {machine['platform']} |",
        f"| Python | {machine['python']} ({machine['python_implementation']}) |",
        f"| SQLite | {machine['sqlite']} |",
        f"| load generator | {method['load_generator']}{wrk_version} |",
        f"| git | {machine['git'].get('head', '?')}, "
        f"{machine['git'].get('changed_files_under_src', '?')} uncommitted file(s) under src/ |",
        f"| load average (1 min) | {method['loadavg_start']} at start, "
        f"{method['loadavg_end']} at end |",
        "",
        "Library versions: "
        + ", ".join(f"{name} {version}" for name, version in machine["versions"].items() if version)
        + ".",
        "",
        "## Method",
        "",
        f"- {method['reps']} repetitions; in each, every target in turn (order rotated per "
        f"repetition: {'; '.join(' → '.join(order) for order in method['orders'])}).",
        f"- Server: `uvicorn --factory ...`, 1 worker, loop/http auto (uvloop "
        f"{machine['versions'].get('uvloop') or 'absent'}, httptools "
        f"{machine['versions'].get('httptools') or 'absent'}), uvicorn access log off, "
        + (
            "pinned to CPU 0 with `taskset -c 0`."
            if method["pinned"]
            else "NOT pinned (taskset or a second CPU missing)."
        ),
        f"- Load: {method['load_generator']}, 1 thread, {method['connections']} connections, "
        f"closed loop, {'pinned to CPU 1' if method['pinned'] else 'unpinned'}; "
        f"{method['warmup_s']} s warm-up (discarded) then {method['duration_s']} s measured.",
        f"- Requests: `GET /api/v1/products/{{random id in 1..{method['products']}}}` with "
        "`Accept: application/json`; the peers' requests also carry a valid HS256 bearer token "
        "(only (b) checks it), bastion's none (it verifies any bearer token it gets, so it is "
        "measured anonymously, as in #2; `benchmarks/auth_path.py` measures it signed in).",
        "- Data: one SQLite file in WAL mode, seeded deterministically "
        "(`python -m benchmarks.seed`), shared by every target.",
        "- Reported: medians over repetitions of req/s, p50 and p99 latency (from the load "
        "generator), and server CPU per request (utime+stime of the server process from /proc "
        "over the measured window, divided by requests: less sensitive to other load on the "
        "machine than req/s).",
        "",
        "## Results",
        "",
        "| target | req/s (median) | min-max req/s | p50 ms | p99 ms | server CPU µs/req "
        "| non-2xx | socket errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, row in summary.items():
        lines.append(
            f"| {BY_KEY[key].label} | {row['req_per_s']:.0f} | {row['req_per_s_min']:.0f}-"
            f"{row['req_per_s_max']:.0f} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
            f"{row['server_cpu_us_per_req']:.0f} | {row['non2xx']} | {row['socket_errors']} |"
        )
    lines += [
        "",
        "### Ratios (bastion / peer)",
        "",
        "Above 1 is better for bastion in req/s, below 1 is better in latency and CPU.",
        "",
        "| ratio | req/s | p50 | p99 | CPU/req |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for ratio in result["ratios"]:
        lines.append(
            f"| {ratio['ratio']} | {ratio['req_per_s']:.2f} | {ratio['p50']:.2f} | "
            f"{ratio['p99']:.2f} | {ratio['cpu_per_req']:.2f} |"
        )
    lines += ["", "### Checks", ""]
    for key, check in result["checks"].items():
        lines.append(
            f"- {BY_KEY[key].label}: sample body matches bastion's: "
            f"{check['body_matches']}; response headers: {', '.join(check['headers'])}"
            + (
                f"; access-log lines / requests served: {check['access_log']}"
                if check["access_log"]
                else ""
            )
        )
    lines += [
        "",
        "### Every run",
        "",
        "| rep | target | req/s | p50 ms | p99 ms | CPU µs/req | CPU share | non-2xx | load 1m |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in result["runs"]:
        lines.append(
            f"| {run['rep']} | {run['target']} | {run['req_per_s']:.0f} | "
            f"{run['p50_ms']:.2f} | {run['p99_ms']:.2f} | "
            f"{run['server_cpu_us_per_req']} | "
            f"{run['server_cpu_share']} | {run['non2xx']} | {run['loadavg_1m_before']} |"
        )
    in_process = result.get("in_process") or {}
    if in_process.get("rows"):
        lines += [
            "",
            "## In process: one row by primary key (no HTTP)",
            "",
            "`python -m benchmarks.in_process rows`, pinned to CPU 0; random ids; median "
            "of 200-call batches. CPU µs counts all threads of the process.",
            "",
            "| access path | what it stands for | wall µs | CPU µs |",
            "| --- | --- | ---: | ---: |",
        ]
        for row in in_process["rows"]:
            lines.append(
                f"| {row['case']} | {row['note']} | {row['wall_us']:.1f} | {row['cpu_us']:.1f} |"
            )
    if in_process.get("pieces"):
        lines += [
            "",
            "## In process: per-request pieces outside the query",
            "",
            "Same process and method as the table above.",
            "",
            "| piece | what it is | wall µs | CPU µs |",
            "| --- | --- | ---: | ---: |",
        ]
        for row in in_process["pieces"]:
            lines.append(
                f"| {row['case']} | {row['note']} | {row['wall_us']:.1f} | {row['cpu_us']:.1f} |"
            )
    if in_process.get("asgi"):
        lines += [
            "",
            "## In process: the ASGI app without a server",
            "",
            "`python -m benchmarks.in_process asgi`: each app called directly with a "
            "synthetic scope (no sockets, no HTTP parsing), pinned to CPU 0. The gap "
            "to the HTTP CPU/req above is the server's share (uvicorn, httptools, "
            "sockets).",
            "",
            "| target | 1 in flight: µs/req | 16 in flight: req/s | 16 in flight: CPU µs/req |",
            "| --- | ---: | ---: | ---: |",
        ]
        for row in in_process["asgi"].values():
            lines.append(
                f"| {row['label']} | {row['sequential']['wall_us']:.0f} | "
                f"{row['concurrent']['req_per_s']:.0f} | "
                f"{row['concurrent']['cpu_us']:.0f} |"
            )
    for key, profile in (result.get("profiles") or {}).items():
        lines += [
            "",
            f"## Profile: {BY_KEY[key].label} under load",
            "",
            f"yappi (CPU clock, all threads merged) over one {method['duration_s']:.0f} s "
            f"window after the warm-up: {profile['requests_profiled']} requests, "
            f"{profile['cpu_seconds']} CPU s profiled "
            f"({profile['req_per_s_while_profiled']:.0f} req/s while profiled). Shares "
            "are of all profiled CPU time; a deterministic profiler inflates code with "
            "many small calls, so read them as where to look, not as costs.",
            "",
            "Top self time (in the function itself):",
            "",
            "| share | calls/req | function | where |",
            "| ---: | ---: | --- | --- |",
        ]
        per = max(1, profile["requests_profiled"])
        lines += [
            f"| {row['share']:.1%} | {row['calls'] / per:.2f} | `{row['function']}` | "
            f"`{row['where']}` |"
            for row in profile["self"][:25]
        ]
        lines += [
            "",
            "Top inclusive time (the function and everything it calls):",
            "",
            "| share | calls/req | function | where |",
            "| ---: | ---: | --- | --- |",
        ]
        lines += [
            f"| {row['share']:.1%} | {row['calls'] / per:.2f} | `{row['function']}` | "
            f"`{row['where']}` |"
            for row in profile["inclusive"]
        ]
    lines += ["", "## Notes", ""] + [f"- {note}" for note in result["notes"]]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# --- main -------------------------------------------------------------------------------


def _in_process(
    db: Path, workdir: Path, token: str, keys: list[str], args: argparse.Namespace, pin: bool
) -> dict[str, Any]:
    env = _child_env(workdir, db, None, token, args.products, None)
    measured = _bench_json(
        _run_bounded(
            _pinned(
                SERVER_CPU,
                [
                    sys.executable,
                    "-m",
                    "benchmarks.in_process",
                    "rows",
                    str(db),
                    "--products",
                    str(args.products),
                    "--seconds",
                    "1.5",
                ],
                pin,
            ),
            env=env,
            timeout=180,
        )
    )
    variants: list[tuple[str, str, Target, dict[str, str]]] = [
        (key, BY_KEY[key].label, BY_KEY[key], {}) for key in keys
    ]
    if "bastion" in keys:
        # Not a served target: shows what the access log line costs bastion.
        variants.insert(
            1,
            (
                "bastion_no_access_log",
                "bastion, access log off",
                BY_KEY["bastion"],
                {"BASTION_LOG_ACCESS_LOG": "false"},
            ),
        )
    asgi = {}
    for key, label, target, extra in variants:
        env = _child_env(workdir, db, target, token, args.products, workdir / f"{key}-inproc.log")
        env.update(extra)
        asgi[key] = _bench_json(
            _run_bounded(
                _pinned(
                    SERVER_CPU,
                    [
                        sys.executable,
                        "-m",
                        "benchmarks.in_process",
                        "asgi",
                        str(db),
                        "--factory",
                        target.factory,
                        "--products",
                        str(args.products),
                        "--seconds",
                        "2",
                    ],
                    pin,
                ),
                env=env,
                timeout=120,
            )
        )
        asgi[key]["label"] = label
    return {"rows": measured["rows"], "pieces": measured["pieces"], "asgi": asgi}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_arguments(parser, [t.key for t in TARGETS])
    parser.add_argument("--load-generator", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--skip-in-process", action="store_true")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    keys, profile_keys = selected_targets(parser, args, BY_KEY)

    generator = args.load_generator
    if generator in ("auto", "wrk") and shutil.which("wrk") is None:
        if generator == "wrk":
            parser.error("wrk is not installed: apt-get install -y wrk (or make bench)")
        print(
            "wrk not found (install it with: apt-get install -y wrk); falling back to the "
            "slower Python generator (benchmarks/loadgen.py).",
            file=sys.stderr,
        )
        generator = "python"
    elif generator == "auto":
        generator = "wrk"
    pin = _pinning()
    if not pin:
        print("warning: taskset or CPUs 0 and 1 unavailable; running unpinned", file=sys.stderr)

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    atexit.register(_kill_all)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="bastion-bench-"))
    token = _token()
    in_process: dict[str, Any] = {}
    loadavg_start = round(os.getloadavg()[0], 2)
    try:
        db = workdir / "bench.sqlite3"
        _run_bounded(
            [sys.executable, "-m", "benchmarks.seed", str(db), "--products", str(args.products)],
            env=_child_env(workdir, db, None, token, args.products, None),
            timeout=120,
        )

        def run(key: str, rep: int, profile: bool) -> dict[str, Any]:
            return run_target(
                BY_KEY[key],
                rep=rep,
                db=db,
                workdir=workdir,
                token=token,
                args=args,
                generator=generator,
                pin=pin,
                profile=profile,
            )

        runs, orders = measure(keys, args.reps, run)
        if not args.skip_in_process:
            print("in-process measurements ...", flush=True)
            in_process = _in_process(db, workdir, token, keys, args, pin)
        profiles = profile_targets(profile_keys, run)
    except KeyboardInterrupt:
        print("interrupted: servers stopped, nothing written", file=sys.stderr)
        return 130
    finally:
        _kill_all()
        shutil.rmtree(workdir, ignore_errors=True)

    summary = summarize(runs, keys)
    reference = next((r["sample_body"] for r in runs if r["target"] == "bastion"), None)
    checks = {}
    for key in keys:
        mine = [r for r in runs if r["target"] == key]
        body = json.loads(mine[0]["sample_body"])
        log = [
            f"{r['access_log_lines']}/{r['requests_served_total']}"
            for r in mine
            if r["access_log_lines"] is not None
        ]
        checks[key] = {
            "body_matches": None if reference is None else body == json.loads(reference),
            "headers": mine[0]["sample_headers"],
            "access_log": ", ".join(log),
        }
    notes = [
        "The machine is shared: other engineers may run test suites at the same time, so "
        "absolute req/s move between runs; compare targets within one run (they are "
        "interleaved for that reason) and prefer the CPU µs/req column, which does not count "
        "time spent waiting for the core.",
        "With 2 CPUs, the server gets one and the load generator the other; the server's "
        "worker threads (FastAPI's and bastion's thread pools) share CPU 0 with the event loop.",
        "bastion's response also carries ETag, Cache-Control and X-Request-ID; peer (b) adds "
        "X-Request-ID; bodies are below bastion's gzip threshold, so nothing is compressed.",
    ]
    if generator == "python":
        notes.append(
            "Load generator: the Python/httpx fallback, not wrk. It saturates its own "
            "core early, so req/s are lower bounds and ratios are compressed."
        )
    result = {
        "schema": 1,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "method": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "reps": args.reps,
            "connections": args.connections,
            "products": args.products,
            "load_generator": generator,
            "pinned": pin,
            "orders": orders,
            "loadavg_start": loadavg_start,
            "loadavg_end": round(os.getloadavg()[0], 2),
            "wall_s": round(time.monotonic() - started, 1),
        },
        "targets": {k: {"label": BY_KEY[k].label, "factory": BY_KEY[k].factory} for k in keys},
        "summary": summary,
        "ratios": ratios(summary),
        "checks": checks,
        "runs": runs,
        "in_process": in_process,
        "profiles": profiles,
        "notes": notes,
    }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "request_path.json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(result, args.output / "request_path.md")
    print(f"\nwrote {args.output / 'request_path.md'} in {result['method']['wall_s']:.0f} s")
    for ratio in result["ratios"]:
        print(
            f"  {ratio['ratio']:<32} req/s x{ratio['req_per_s']:.2f}  "
            f"CPU/req x{ratio['cpu_per_req']:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
