"""Read replicas against a real PostgreSQL streaming replica on loopback.

A session fixture builds its own primary cluster (``initdb``) and streaming replicas
(``pg_basebackup -R``) in a temporary folder on free ports, so the PostgreSQL of the
other tests is never touched. Functions report where they ran with
``pg_is_in_recovery()`` (true only on a replica) and ``inet_server_port()``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel
from sqlalchemy import String, event, func, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from structlog.testing import capture_logs

from bastion import App, Context, Runtime
from bastion.errors import ReadOnlyViolation
from bastion.settings import Settings, SettingsError, load_settings
from bastion.testing import BastionClient, free_port, migrate, require_service


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "replica_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(100), unique=True)


class Where(BaseModel):
    in_recovery: bool
    port: int
    notes: int


app = App("replicas", metadata=Base.metadata)


def _where(ctx: Context) -> Where:
    in_recovery, port = ctx.session.execute(
        text("SELECT pg_is_in_recovery(), inet_server_port()")
    ).one()
    notes = ctx.session.scalar(select(func.count()).select_from(Note))
    return Where(in_recovery=in_recovery, port=port, notes=notes)


@app.query("/where")
def where(ctx: Context) -> Where:
    return _where(ctx)


@app.query("/where/primary", primary=True)
def where_primary(ctx: Context) -> Where:
    return _where(ctx)


@app.query("/where/cached", cache="1m")
def where_cached(ctx: Context) -> Where:
    return _where(ctx)


@app.query("/sneaky")
def sneaky_write(ctx: Context) -> None:
    ctx.session.execute(text("INSERT INTO replica_notes (text) VALUES ('sneaky')"))


@app.mutation("/notes")
def add_note(ctx: Context, note: str) -> Where:
    ctx.session.add(Note(text=note))
    ctx.session.flush()
    return _where(ctx)


class Cluster:
    """A primary and its streaming replicas, each a ``postgres`` process of its own."""

    def __init__(self, bindir: Path, root: Path) -> None:
        self.bindir = bindir
        self.root = root
        self.ports: dict[str, int] = {}

    def url(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.ports[name]}/postgres"

    def start_primary(self) -> None:
        data = self.root / "primary"
        self._run("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync")
        with (data / "postgresql.conf").open("a") as conf:
            # pg_hba.conf from initdb --auth=trust already lets 127.0.0.1 replicate.
            conf.write("wal_level = replica\nmax_wal_senders = 8\nfsync = off\n")
        self._start("primary")

    def start_replica(self, name: str) -> None:
        self._run(
            "pg_basebackup",
            *("-h", "127.0.0.1", "-p", str(self.ports["primary"]), "-U", "postgres"),
            *("-D", str(self.root / name), "-R", "-X", "stream", "--no-sync", "--checkpoint=fast"),
        )
        self._start(name)

    def stop(self, name: str) -> None:
        if self.ports.pop(name, None) is not None:
            self._run("pg_ctl", "-D", str(self.root / name), "-m", "immediate", "stop")

    def _start(self, name: str) -> None:
        port = free_port()
        options = f"-p {port} -k {self.root} -c listen_addresses=127.0.0.1"
        log = self.root / f"{name}.log"
        self._run(
            "pg_ctl", "-D", str(self.root / name), "-l", str(log), "-o", options, "-w", "start"
        )
        self.ports[name] = port

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bindir / program), *args]
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root.
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)


def _unavailable_reason(bindir: Path) -> str | None:
    if not (bindir / "pg_ctl").exists() or not (bindir / "pg_basebackup").exists():
        return f"PostgreSQL server binaries not found in {bindir} (apt install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root needs a 'postgres' OS user to run the test clusters"
        if shutil.which("runuser") is None:
            return "running as root needs runuser to start the test clusters as 'postgres'"
    return None


def _bindir() -> Path:
    try:
        found = subprocess.run(
            ["pg_config", "--bindir"], check=True, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        found = "/usr/lib/postgresql/15/bin"
    return Path(found)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    bindir = _bindir()
    require_service(_unavailable_reason(bindir))
    # Not under pytest's tmp folder: that one is private to root, and the clusters
    # run as the postgres user.
    root = Path(tempfile.mkdtemp(prefix="bastion-replicas-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    made = Cluster(bindir, root)
    try:
        made.start_primary()
        migrate(app, made.url("primary"))
        made.start_replica("replica")
        yield made
    finally:
        for name in list(made.ports):
            if name != "primary":
                made.stop(name)
        made.stop("primary")
        shutil.rmtree(root, ignore_errors=True)


def _settings(primary: str, replicas: list[str]) -> Settings:
    return load_settings(
        None,
        environ={},
        overrides={
            "database": {"url": primary, "replica_urls": replicas},
            "log": {"access_log": False},
        },
    )


@pytest.fixture
async def start_runtime(cluster: Cluster) -> AsyncIterator[Any]:
    made: list[Runtime] = []

    async def build(*replicas: str) -> Runtime:
        runtime = app.runtime(_settings(cluster.url("primary"), list(replicas)))
        made.append(runtime)
        await runtime.startup()
        return runtime

    try:
        yield build
    finally:
        for runtime in made:
            await runtime.shutdown()


@pytest.mark.postgres
@pytest.mark.slow
async def test_queries_read_from_the_replica_unless_they_ask_for_the_primary(
    cluster: Cluster, start_runtime: Any
) -> None:
    runtime = await start_runtime(cluster.url("replica"))

    on_replica = await runtime.call(where)
    on_primary = await runtime.call(where_primary)

    assert (on_replica.in_recovery, on_replica.port) == (True, cluster.ports["replica"])
    assert (on_primary.in_recovery, on_primary.port) == (False, cluster.ports["primary"])


@pytest.mark.postgres
@pytest.mark.slow
async def test_the_write_path_and_cached_queries_never_touch_the_replica(
    cluster: Cluster, start_runtime: Any
) -> None:
    runtime = await start_runtime(cluster.url("replica"))
    replica_checkouts: list[object] = []
    for replica in runtime.database.replicas:
        event.listen(replica.engine, "checkout", lambda *args: replica_checkouts.append(args))
    before = await runtime.call(where_primary)

    written = await runtime.call(add_note, note=uuid.uuid4().hex)
    cached = await runtime.call(where_cached)

    # The mutation reads its own insert: it runs on the primary, in one transaction.
    assert (written.in_recovery, written.port) == (False, cluster.ports["primary"])
    assert written.notes == before.notes + 1
    assert (cached.in_recovery, cached.port) == (False, cluster.ports["primary"])
    assert replica_checkouts == []


@pytest.mark.postgres
@pytest.mark.slow
async def test_a_query_writing_on_the_replica_is_refused_like_on_the_primary(
    cluster: Cluster, start_runtime: Any
) -> None:
    runtime = await start_runtime(cluster.url("replica"))

    with pytest.raises(ReadOnlyViolation, match="use a mutation"):
        await runtime.call(sneaky_write)
    assert (await runtime.call(where)).in_recovery is True


@pytest.mark.postgres
@pytest.mark.slow
async def test_a_query_on_the_replica_eventually_sees_a_mutation(
    cluster: Cluster, start_runtime: Any
) -> None:
    runtime = await start_runtime(cluster.url("replica"))
    written = await runtime.call(add_note, note=uuid.uuid4().hex)

    with anyio.fail_after(10):
        seen = await runtime.call(where)
        while seen.notes < written.notes:
            # Replication is asynchronous: the replica replays the commit a moment later.
            await anyio.sleep(0.02)
            seen = await runtime.call(where)

    assert seen.in_recovery is True
    assert seen.notes == written.notes


@pytest.mark.postgres
@pytest.mark.slow
async def test_an_unreachable_replica_is_skipped_logged_once_and_reported_degraded(
    cluster: Cluster, start_runtime: Any
) -> None:
    cluster.start_replica("doomed")
    replica, doomed = cluster.ports["replica"], cluster.ports["doomed"]
    runtime = await start_runtime(cluster.url("replica"), cluster.url("doomed"))
    alone = await start_runtime(cluster.url("doomed"))
    ports_up = [(await runtime.call(where)).port for _ in range(4)]
    assert (await alone.call(where)).port == doomed

    cluster.stop("doomed")
    with capture_logs() as logs:
        ports_down = [(await runtime.call(where)).port for _ in range(4)]
        fallback = [await alone.call(where) for _ in range(3)]
        async with BastionClient(runtime.asgi()) as client:
            ready = await client.get("/health/ready")

    assert sorted(ports_up) == sorted([replica, doomed] * 2)
    assert ports_down == [replica] * 4
    # With no replica left, queries still answer, from the primary.
    assert [(w.in_recovery, w.port) for w in fallback] == [(False, cluster.ports["primary"])] * 3
    warnings = [e for e in logs if e["event"] == "replica_unavailable"]
    assert [(e["log_level"], e["replica"]) for e in warnings] == [
        ("warning", "database_replica_1"),
        ("warning", "database_replica_0"),
    ]
    assert (ready.status_code, ready.json()["status"]) == (200, "degraded")
    checks = {c["name"]: c["healthy"] for c in ready.json()["checks"]}
    assert {name: checks[name] for name in ("database", "database_replica_0")} == {
        "database": True,
        "database_replica_0": True,
    }
    assert checks["database_replica_1"] is False


@pytest.mark.parametrize(
    ("database", "problem"),
    [
        (
            {"url": "sqlite:///app.db", "replica_urls": ["postgresql://127.0.0.1/app"]},
            "replica_urls: read replicas need a PostgreSQL url, not SQLite",
        ),
        (
            {"url": "postgresql://127.0.0.1/app", "replica_urls": ["mysql://s3cret@db/app"]},
            "replica_urls[0]: not a PostgreSQL URL",
        ),
    ],
)
def test_replica_urls_need_postgresql(database: dict[str, Any], problem: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(None, environ={}, overrides={"database": database})

    assert problem in str(raised.value)
    assert "s3cret" not in str(raised.value)
