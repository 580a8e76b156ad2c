"""Authenticated request path versus the bare one (issue #3), as ratios from one run.

Run from the repository root::

    .venv/bin/python benchmarks/auth_path.py [--duration 10] [--reps 3] [--connections 16]

Every target is the same bastion app (``benchmarks/apps/bastion_app.py``, production
settings) serving ``GET /api/v1/products/{id}`` from the same seeded SQLite file;
only the settings and the request's credentials change:

- ``bare``: rate limiting and idempotency off, no credential: the path #2 measured.
- ``anonymous``: rate limiting (per client address) and idempotency on, no
  credential: what ``request_path.py`` now measures as ``bastion``.
- ``jwt_only``: a valid bastion access token on every request (signature and
  claims checked, the user loaded from the database), rate limiting and
  idempotency off.
- ``authenticated``: the token, rate limiting (per user) and idempotency on: the
  production path of #3. ``authenticated / bare`` is the headline ratio.
- ``api_key``: the same with ``X-API-Key`` instead of the token.
- ``bare_post``, ``authenticated_post_no_key`` and ``authenticated_post``:
  ``POST /api/v1/products/{id}/quote``, a mutation that reads the row in a write
  transaction: anonymous with rate limiting and idempotency off; with the token,
  rate limiting and idempotency on but no key; and the same with a fresh
  ``Idempotency-Key`` on every request, so that each one claims, then completes,
  an idempotency record.

Limits are set far above the load (the user and API-key policies get distinct
values, so the ``RateLimit-Limit`` header shows which policy counted a request).
The user and the API key are created in the bench database before the first run
(``python -m benchmarks.apps.bastion_app seed-auth``); an access token lives at most
15 minutes, so a fresh one is minted for every run. Every run gets its own copy of
the seeded database, so idempotency records written by one run never weigh on the
next. The order of the targets rotates every repetition, as in request_path.py,
whose machinery (server start, pinning, wrk, CPU from /proc, medians) this reuses.
Results: benchmarks/results/auth_path.json and auth_path.md.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import request_path as rp

FACTORY = "benchmarks.apps.bastion_app:create"
# Far above anything one core can serve in a minute: every request pays for the
# check, none is refused. Distinct per policy, so the answer says which one counted.
DEFAULT_LIMITS = '["100000000/minute"]'
USER_LIMITS = '["200000000/minute"]'
API_KEY_LIMITS = '["300000000/minute"]'
LIMITS_FOR = {"100000000": "ip (default_limits)", "200000000": "user", "300000000": "api_key"}
OFF = (("BASTION_RATELIMIT_ENABLED", "false"), ("BASTION_IDEMPOTENCY_ENABLED", "false"))
ON = (
    ("BASTION_RATELIMIT_ENABLED", "true"),
    ("BASTION_RATELIMIT_DEFAULT_LIMITS", DEFAULT_LIMITS),
    ("BASTION_RATELIMIT_USER_LIMITS", USER_LIMITS),
    ("BASTION_RATELIMIT_API_KEY_LIMITS", API_KEY_LIMITS),
    ("BASTION_IDEMPOTENCY_ENABLED", "true"),
)
# The API key is only known once the database is seeded: its target carries an empty
# value, filled in for each run (and never written to the results).
API_KEY_ENV = "BENCH_API_KEY"


def _target(key: str, label: str, env: tuple[tuple[str, str], ...], **options: Any) -> rp.Target:
    options.setdefault("bearer", False)
    return rp.Target(key, label, FACTORY, True, bastion=True, env=env, **options)


TARGETS = (
    _target("bare", "bare: anonymous, no rate limit, no idempotency (#2)", OFF),
    _target("anonymous", "anonymous + rate limit + idempotency", ON),
    _target("jwt_only", "JWT, no rate limit, no idempotency", OFF, bearer=True),
    _target("authenticated", "JWT + rate limit + idempotency", ON, bearer=True),
    _target("api_key", "API key + rate limit + idempotency", (*ON, (API_KEY_ENV, ""))),
    _target(
        "bare_post",
        "POST: anonymous, no rate limit, no key",
        OFF,
        method="POST",
        path_suffix="/quote",
    ),
    _target(
        "authenticated_post_no_key",
        "POST: JWT + rate limit + idempotency on, no Idempotency-Key",
        ON,
        bearer=True,
        method="POST",
        path_suffix="/quote",
    ),
    _target(
        "authenticated_post",
        "POST: JWT + rate limit + Idempotency-Key",
        ON,
        bearer=True,
        method="POST",
        path_suffix="/quote",
        idempotency_key=True,
    ),
)
BY_KEY = {target.key: target for target in TARGETS}
HEADLINE = ("authenticated", "bare")
RATIOS = (
    HEADLINE,
    ("anonymous", "bare"),
    ("jwt_only", "bare"),
    ("authenticated", "jwt_only"),
    ("authenticated", "anonymous"),
    ("api_key", "bare"),
    ("api_key", "authenticated"),
    ("bare_post", "bare"),
    ("authenticated_post", "bare"),
    ("authenticated_post", "bare_post"),
    ("authenticated_post_no_key", "bare_post"),
    ("authenticated_post", "authenticated_post_no_key"),
)
# What each step adds, as differences of median CPU µs per request.
LAYERS = (
    ("rate limit (per address) + idempotency check, anonymous GET", "bare", "anonymous"),
    ("JWT verification + user load from the database", "bare", "jwt_only"),
    ("rate limit (per user) + idempotency check, on top of the JWT", "jwt_only", "authenticated"),
    ("all of #3 on a GET (the headline)", "bare", "authenticated"),
    ("API key instead of JWT (rate limit + idempotency on both)", "authenticated", "api_key"),
    ("a mutation's write transaction instead of a read", "bare", "bare_post"),
    ("JWT + rate limit on a POST (no Idempotency-Key)", "bare_post", "authenticated_post_no_key"),
    (
        "the idempotency record: claim and completion (a fresh Idempotency-Key)",
        "authenticated_post_no_key",
        "authenticated_post",
    ),
    ("all of #3 on a POST with an Idempotency-Key", "bare_post", "authenticated_post"),
)


# --- credentials and databases ----------------------------------------------------------


def _app_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.apps.bastion_app", *args]


def _seed(workdir: Path, db: Path, products: int) -> dict[str, Any]:
    env = rp._child_env(workdir, db, BY_KEY["bare"], "", products, None)
    rp._run_bounded(
        [sys.executable, "-m", "benchmarks.seed", str(db), "--products", str(products)],
        env=env,
        timeout=120,
    )
    seeded: dict[str, Any] = rp._bench_json(
        rp._run_bounded(_app_command("seed-auth"), env=env, timeout=120)
    )
    # Everything into the main file, so that a plain copy of it is the whole database.
    with contextlib.closing(sqlite3.connect(db)) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return seeded


def _mint(workdir: Path, db: Path, user_id: int, products: int) -> tuple[str, int]:
    env = rp._child_env(workdir, db, BY_KEY["bare"], "", products, None)
    minted = rp._bench_json(
        rp._run_bounded(_app_command("token", str(user_id)), env=env, timeout=60)
    )
    return str(minted["token"]), int(minted["ttl_s"])


def _copy(template: Path, workdir: Path, name: str) -> Path:
    copy = workdir / f"{name}.sqlite3"
    _drop(copy)
    shutil.copyfile(template, copy)
    return copy


def _drop(db: Path) -> None:
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        path.unlink(missing_ok=True)


def _idempotency_records(db: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(db)) as connection:
        rows = connection.execute(
            "SELECT state, count(*) FROM bastion_idempotency_keys GROUP BY state"
        ).fetchall()
    return {str(state): int(count) for state, count in rows}


def _sanity(
    template: Path, workdir: Path, seeded: dict[str, Any], args: argparse.Namespace, pin: bool
) -> dict[str, Any]:
    """Serve the ``authenticated`` configuration once and check that it does what it says."""
    target = BY_KEY["authenticated"]
    db = _copy(template, workdir, "sanity")
    token, _ = _mint(workdir, db, seeded["user_id"], args.products)
    port = rp._free_port()
    out_file = workdir / "sanity.server.txt"
    env = rp._child_env(workdir, db, target, token, args.products, workdir / "sanity.log")
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        target.factory,
        "--host",
        rp.HOST,
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    headers = rp.request_headers(env)
    anonymous = {"Accept": "application/json"}
    # The signature's last characters changed: same claims, invalid signature.
    tampered = {**anonymous, "Authorization": f"Bearer {token[:-4]}{token[-4:][::-1]}x"}
    peer_token = {**anonymous, "Authorization": f"Bearer {rp._token()}"}
    api_key = {**anonymous, "X-API-Key": seeded["api_key"]}
    keyed = {**headers, "Idempotency-Key": "sanity-1"}
    path = "/api/v1/products/7"
    with out_file.open("wb") as out:
        server = rp._spawn(
            rp._pinned(rp.SERVER_CPU, command, pin), env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        rp._wait_ready(server, port, headers, out_file)
        checks: dict[str, Any] = {}
        status, _, values = rp._get(port, path, headers)
        checks["valid token"] = (status, values.get("ratelimit-limit"))
        status, _, values = rp._get(port, path, anonymous)
        checks["no credential"] = (status, values.get("ratelimit-limit"))
        status, _, values = rp._get(port, path, api_key)
        checks["API key"] = (status, values.get("ratelimit-limit"))
        checks["tampered token"] = (rp._get(port, path, tampered)[0], None)
        checks["peer (b)'s bench token (no iss/aud/jti)"] = (
            rp._get(port, path, peer_token)[0],
            None,
        )
        first = rp._get(port, f"{path}/quote", keyed, method="POST")
        second = rp._get(port, f"{path}/quote", keyed, method="POST")
        checks["POST with a new Idempotency-Key"] = (first[0], first[2].get("idempotent-replayed"))
        checks["the same key again"] = (second[0], second[2].get("idempotent-replayed"))
    finally:
        rp._kill(server)
    records = _idempotency_records(db)
    _drop(db)
    expected = {
        "valid token": (200, USER_LIMITS),
        "no credential": (200, DEFAULT_LIMITS),
        "API key": (200, API_KEY_LIMITS),
        "tampered token": (401, None),
        "peer (b)'s bench token (no iss/aud/jti)": (401, None),
        "POST with a new Idempotency-Key": (201, None),
        "the same key again": (201, "true"),
    }
    rows = []
    for name, (status, value) in checks.items():
        want_status, want_value = expected[name]
        if want_value is not None and want_value.startswith("["):
            want_value = json.loads(want_value)[0].split("/")[0]
        rows.append(
            {
                "check": name,
                "status": status,
                "header": value,
                "ok": status == want_status and (want_value is None or value == want_value),
            }
        )
    return {"checks": rows, "idempotency_records": records}


# --- runs -------------------------------------------------------------------------------


def _run(
    target: rp.Target,
    *,
    rep: int,
    template: Path,
    workdir: Path,
    seeded: dict[str, Any],
    args: argparse.Namespace,
    generator: str,
    pin: bool,
    profile: bool = False,
) -> dict[str, Any]:
    db = _copy(template, workdir, f"{target.key}-{rep}")
    token = ""
    if target.bearer:
        token, ttl = _mint(workdir, db, seeded["user_id"], args.products)
        if ttl < args.warmup + args.duration + 60:
            raise RuntimeError(f"access tokens live {ttl} s: too short for one run")
    if any(name == API_KEY_ENV for name, _ in target.env):
        env = tuple((n, seeded["api_key"] if n == API_KEY_ENV else v) for n, v in target.env)
        target = dataclasses.replace(target, env=env)
    try:
        run = rp.run_target(
            target,
            rep=rep,
            db=db,
            workdir=workdir,
            token=token,
            args=args,
            generator=generator,
            pin=pin,
            profile=profile,
        )
        run["ratelimit_limit"] = run["sample_header_values"].get("ratelimit-limit")
        run["idempotency_records"] = _idempotency_records(db) if target.idempotency_key else None
    finally:
        _drop(db)
    return run


def summarize(runs: list[dict[str, Any]], keys: list[str]) -> dict[str, Any]:
    summary = rp.summarize(runs, keys)
    for key, row in summary.items():
        mine = [r for r in runs if r["target"] == key]
        row["p90_ms"] = round(statistics.median(r["p90_ms"] for r in mine), 3)
        row["server_cpu_share"] = round(statistics.median(r["server_cpu_share"] for r in mine), 3)
    return summary


def per_rep_ratios(runs: list[dict[str, Any]], mine: str, base: str) -> list[dict[str, Any]]:
    """The ratio within each repetition: runs of one repetition are minutes apart, not more."""
    out = []
    for rep in sorted({r["rep"] for r in runs}):
        a = next((r for r in runs if r["rep"] == rep and r["target"] == mine), None)
        b = next((r for r in runs if r["rep"] == rep and r["target"] == base), None)
        if a and b and a["server_cpu_us_per_req"] and b["server_cpu_us_per_req"]:
            out.append(
                {
                    "rep": rep,
                    "req_per_s": round(a["req_per_s"] / b["req_per_s"], 3),
                    "cpu_per_req": round(
                        a["server_cpu_us_per_req"] / b["server_cpu_us_per_req"], 3
                    ),
                }
            )
    return out


def layers(summary: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for what, base, mine in LAYERS:
        if base in summary and mine in summary:
            a, b = summary[mine], summary[base]
            out.append(
                {
                    "layer": what,
                    "from": base,
                    "to": mine,
                    "cpu_us_per_req": round(
                        a["server_cpu_us_per_req"] - b["server_cpu_us_per_req"], 1
                    ),
                    "share_of_base_cpu": round(
                        a["server_cpu_us_per_req"] / b["server_cpu_us_per_req"] - 1, 3
                    ),
                    "req_per_s_change": round(a["req_per_s"] / b["req_per_s"] - 1, 3),
                }
            )
    return out


# --- report -----------------------------------------------------------------------------


def write_markdown(result: dict[str, Any], path: Path) -> None:
    machine = result["machine"]
    method = result["method"]
    summary = result["summary"]
    wrk_version = f" ({machine['wrk']})" if method["load_generator"] == "wrk" else ""
    load = method["loadavg"]
    lines = [
        "# Authenticated request path versus the bare one (issue #3)",
        "",
        f"Measured {result['date']} by `benchmarks/auth_path.py` "
        "(generated file: rerun the script rather than editing it).",
        "",
    ]
    headline = next((r for r in result["ratios"] if r["ratio"] == "/".join(HEADLINE)), None)
    if headline is not None:
        a, b = summary[HEADLINE[0]], summary[HEADLINE[1]]
        lines += [
            f"**authenticated / bare: {headline['req_per_s']:.2f}x the requests per second** "
            f"({a['req_per_s']:.0f} against {b['req_per_s']:.0f} req/s, medians), "
            f"{headline['cpu_per_req']:.2f}x the server CPU per request "
            f"({a['server_cpu_us_per_req']:.0f} against {b['server_cpu_us_per_req']:.0f} µs).",
            "",
        ]
    lines += [
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
        f"| load average (1, 5, 15 min) | {' / '.join(map(str, load['start']))} at start, "
        f"{' / '.join(map(str, load['end']))} at end |",
        "",
        "Library versions: "
        + ", ".join(f"{name} {version}" for name, version in machine["versions"].items() if version)
        + ".",
        "",
        "## Method",
        "",
        "- One bastion app (`benchmarks/apps/bastion_app.py`, production settings: JSON access "
        "log to a file, security headers, request ids), one seeded SQLite file in WAL mode "
        "(copied fresh for every run, with one user and one API key), and these targets:",
        "",
        "| target | what changes |",
        "| --- | --- |",
    ]
    for key in result["targets"]:
        lines.append(f"| `{key}` | {BY_KEY[key].label} |")
    lines += [
        "",
        f"- {method['reps']} repetitions; in each, every target in turn (order rotated per "
        f"repetition: {'; '.join(' → '.join(order) for order in method['orders'])}).",
        "- Server: `uvicorn --factory benchmarks.apps.bastion_app:create`, 1 worker, uvicorn "
        "access log off, "
        + (
            "pinned to CPU 0 with `taskset -c 0`."
            if method["pinned"]
            else "NOT pinned (taskset or a second CPU missing)."
        ),
        f"- Load: {method['load_generator']}, 1 thread, {method['connections']} connections, "
        f"closed loop, {'pinned to CPU 1' if method['pinned'] else 'unpinned'}; "
        f"{method['warmup_s']} s warm-up (discarded) then {method['duration_s']} s measured.",
        f"- Requests: `GET /api/v1/products/{{random id in 1..{method['products']}}}` "
        "(POST targets: `POST .../{id}/quote`, a mutation reading the same row in a write "
        "transaction) with `Accept: application/json` and the target's credential: a bastion "
        "access token (`Tokens.access_token` for the seeded user, minted fresh for every run) "
        "or the seeded API key. `authenticated_post` sends a new `Idempotency-Key` on every "
        "request.",
        f"- Rate limits far above the load: default {DEFAULT_LIMITS}, user {USER_LIMITS}, "
        f"API key {API_KEY_LIMITS} (distinct so that the `RateLimit-Limit` header says "
        "which policy counted the request).",
        "- Reported: medians over repetitions (req/s, latency from the load generator, server "
        "CPU per request from /proc over the measured window).",
        "",
        "## Results",
        "",
        "| target | req/s (median) | min-max req/s | p50 ms | p99 ms | server CPU µs/req "
        "| CPU share | non-2xx | socket errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, row in summary.items():
        lines.append(
            f"| `{key}` | {row['req_per_s']:.0f} | {row['req_per_s_min']:.0f}-"
            f"{row['req_per_s_max']:.0f} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
            f"{row['server_cpu_us_per_req']:.0f} | {row['server_cpu_share']:.2f} | "
            f"{row['non2xx']} | {row['socket_errors']} |"
        )
    lines += [
        "",
        "### Ratios",
        "",
        "Of the medians. Below 1 in req/s and above 1 in latency and CPU/req is the cost of "
        "what the first target adds.",
        "",
        "| ratio | req/s | p50 | p99 | CPU/req |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for ratio in result["ratios"]:
        lines.append(
            f"| {ratio['ratio']} | {ratio['req_per_s']:.2f} | {ratio['p50']:.2f} | "
            f"{ratio['p99']:.2f} | {ratio['cpu_per_req']:.2f} |"
        )
    if result["headline_per_rep"]:
        lines += [
            "",
            "The headline ratio within each repetition (req/s; CPU/req): "
            + "; ".join(
                f"rep {r['rep']}: {r['req_per_s']:.2f}; {r['cpu_per_req']:.2f}"
                for r in result["headline_per_rep"]
            )
            + "; median of these: "
            + f"{statistics.median(r['req_per_s'] for r in result['headline_per_rep']):.2f}; "
            + f"{statistics.median(r['cpu_per_req'] for r in result['headline_per_rep']):.2f}.",
        ]
    if result["layers"]:
        lines += [
            "",
            "### What each layer costs",
            "",
            "Differences of the median server CPU per request between two targets that differ "
            "by that layer only; the req/s column is the change in throughput.",
            "",
            "| layer | from → to | CPU µs/req | CPU/req | req/s |",
            "| --- | --- | ---: | ---: | ---: |",
        ]
        for layer in result["layers"]:
            lines.append(
                f"| {layer['layer']} | `{layer['from']}` → `{layer['to']}` | "
                f"{layer['cpu_us_per_req']:+.0f} | {layer['share_of_base_cpu']:+.1%} | "
                f"{layer['req_per_s_change']:+.1%} |"
            )
    lines += ["", "### Checks", ""]
    sanity = result.get("sanity") or {}
    for row in sanity.get("checks", []):
        detail = f", RateLimit-Limit {row['header']}" if row["header"] else ""
        if row["check"].startswith(("POST", "the same")):
            detail = f", Idempotent-Replayed: {row['header']}" if row["header"] else ""
        lines.append(
            f"- `authenticated` configuration, {row['check']}: {row['status']}{detail} "
            f"({'as expected' if row['ok'] else 'NOT AS EXPECTED'})"
        )
    for key, check in result["checks"].items():
        extra = ""
        if check["ratelimit_policy"]:
            extra += f"; rate-limit policy that counted it: {check['ratelimit_policy']}"
        if check["idempotency_records"]:
            extra += f"; idempotency records / requests served: {check['idempotency_records']}"
        lines.append(
            f"- `{key}`: sample {check['sample']}, body matches `bare`'s: "
            f"{check['body_matches']}; access-log lines / requests served: "
            f"{check['access_log']}{extra}"
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
            f"{run['p50_ms']:.2f} | {run['p99_ms']:.2f} | {run['server_cpu_us_per_req']} | "
            f"{run['server_cpu_share']} | {run['non2xx']} | {run['loadavg_1m_before']} |"
        )
    for key, profile in (result.get("profiles") or {}).items():
        per = max(1, profile["requests_profiled"])
        lines += [
            "",
            f"## Profile: `{key}` under load",
            "",
            f"yappi (CPU clock, all threads) over one {method['duration_s']:.0f} s window: "
            f"{profile['requests_profiled']} requests, {profile['cpu_seconds']} CPU s "
            f"({profile['req_per_s_while_profiled']:.0f} req/s while profiled). A deterministic "
            "profiler inflates code with many small calls: read the shares as where to look.",
            "",
            "| share (inclusive) | calls/req | function | where |",
            "| ---: | ---: | --- | --- |",
        ]
        lines += [
            f"| {row['share']:.1%} | {row['calls'] / per:.2f} | `{row['function']}` | "
            f"`{row['where']}` |"
            for row in profile["inclusive"]
        ]
        lines += [
            "",
            "| share (self) | calls/req | function | where |",
            "| ---: | ---: | --- | --- |",
        ]
        lines += [
            f"| {row['share']:.1%} | {row['calls'] / per:.2f} | `{row['function']}` | "
            f"`{row['where']}` |"
            for row in profile["self"][:25]
        ]
    lines += ["", "## Notes", ""] + [f"- {note}" for note in result["notes"]]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# --- main -------------------------------------------------------------------------------


def _loadavg() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    rp.add_common_arguments(parser, list(BY_KEY))
    parser.add_argument("--output", type=Path, default=rp.RESULTS)
    args = parser.parse_args()
    keys, profile_keys = rp.selected_targets(parser, args, BY_KEY)
    if args.warmup + args.duration + 60 > 900:
        parser.error("warm-up + duration must stay under 14 minutes: access tokens live 15")
    if shutil.which("wrk") is None:
        # The Python generator sends neither API keys nor POSTs; the ratios need wrk.
        parser.error("wrk is not installed: apt-get install -y wrk (or make bench)")
    generator = "wrk"
    pin = rp._pinning()
    if not pin:
        print("warning: taskset or CPUs 0 and 1 unavailable; running unpinned", file=sys.stderr)

    signal.signal(signal.SIGTERM, rp._on_signal)
    signal.signal(signal.SIGHUP, rp._on_signal)
    atexit.register(rp._kill_all)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="bastion-bench-auth-"))
    loadavg_start = _loadavg()
    try:
        template = workdir / "template.sqlite3"
        seeded = _seed(workdir, template, args.products)
        print(f"seeded user {seeded['user_id']} and an API key", flush=True)
        sanity = _sanity(template, workdir, seeded, args, pin)
        for row in sanity["checks"]:
            print(f"check {row['check']}: {row['status']} {row['header'] or ''} ok={row['ok']}")
        if not all(row["ok"] for row in sanity["checks"]):
            print("a check failed: the targets would not measure what they claim", file=sys.stderr)
            return 1

        def run(key: str, rep: int, profile: bool) -> dict[str, Any]:
            return _run(
                BY_KEY[key],
                rep=rep,
                template=template,
                workdir=workdir,
                seeded=seeded,
                args=args,
                generator=generator,
                pin=pin,
                profile=profile,
            )

        runs, orders = rp.measure(
            keys, args.reps, run, suffix=lambda r: f"  load {r['loadavg_1m_before']}"
        )
        profiles = rp.profile_targets(profile_keys, run)
    except KeyboardInterrupt:
        print("interrupted: servers stopped, nothing written", file=sys.stderr)
        return 130
    finally:
        rp._kill_all()
        shutil.rmtree(workdir, ignore_errors=True)

    summary = summarize(runs, keys)
    reference = next((r["sample_body"] for r in runs if r["target"] == "bare"), None)
    checks = {}
    for key in keys:
        mine = [r for r in runs if r["target"] == key]
        limit = mine[0]["ratelimit_limit"]
        records = [
            f"{r['idempotency_records'].get('completed', 0)}/{r['requests_served_total']}"
            for r in mine
            if r["idempotency_records"] is not None
        ]
        checks[key] = {
            "sample": mine[0]["sample_status"],
            "body_matches": None
            if reference is None
            else json.loads(mine[0]["sample_body"]) == json.loads(reference),
            "access_log": ", ".join(
                f"{r['access_log_lines']}/{r['requests_served_total']}" for r in mine
            ),
            "ratelimit_policy": LIMITS_FOR.get(limit or "", limit),
            "idempotency_records": ", ".join(records),
        }
    loadavg_end = _loadavg()
    notes = [
        "The machine is shared (2 CPUs; other engineers' test suites may run at the same "
        f"time): the 1-minute load average was {loadavg_start[0]} at the start and "
        f"{loadavg_end[0]} at the end, and is listed before every run. Targets are "
        "interleaved and the order rotates, so drift spreads over all of them; compare "
        "targets within this run, and prefer the CPU µs/req column, which does not count "
        "time spent waiting for the core.",
        "The server gets CPU 0 and wrk CPU 1; the server's worker threads (where the user "
        "load, the idempotency store and the function run) share CPU 0 with the event loop.",
        "Every authenticated request loads its user by primary key (a Core select on a "
        "worker thread; bastion.auth.service: a ban takes effect on the next request); a "
        "verified access token is remembered by its process until it expires, so its "
        "signature is checked once. An API key is looked up, with its user, in one read "
        "transaction (its `last_used_at` is written at most once a minute, in a write "
        "transaction of its own).",
        "Idempotency on a GET is one method check: only unsafe requests with an "
        "Idempotency-Key are touched. On `authenticated_post` each request claims a record "
        "(an INSERT in its own write transaction) and completes it (an UPDATE in another) "
        "around the mutation's own transaction.",
        "The access token is minted before each run (outside the measured window) because "
        "tokens live at most 15 minutes.",
    ]
    result = {
        "schema": 1,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": rp.machine_info(),
        "method": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "reps": args.reps,
            "connections": args.connections,
            "products": args.products,
            "load_generator": generator,
            "pinned": pin,
            "orders": orders,
            "loadavg": {"start": loadavg_start, "end": loadavg_end},
            "wall_s": round(time.monotonic() - started, 1),
        },
        "targets": {
            k: {"label": BY_KEY[k].label, "env": dict(BY_KEY[k].env), "bearer": BY_KEY[k].bearer}
            for k in keys
        },
        "summary": summary,
        "ratios": rp.ratios(summary, RATIOS),
        "headline_per_rep": per_rep_ratios(runs, *HEADLINE),
        "layers": layers(summary),
        "sanity": sanity,
        "checks": checks,
        "runs": [
            {k: v for k, v in run.items() if k not in ("sample_body", "sample_header_values")}
            | {"sample_body_bytes": len(run["sample_body"])}
            for run in runs
        ],
        "profiles": profiles,
        "notes": notes,
    }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "auth_path.json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(result, args.output / "auth_path.md")
    print(f"\nwrote {args.output / 'auth_path.md'} in {result['method']['wall_s']:.0f} s")
    for ratio in result["ratios"]:
        print(
            f"  {ratio['ratio']:<36} req/s x{ratio['req_per_s']:.2f}  "
            f"CPU/req x{ratio['cpu_per_req']:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
