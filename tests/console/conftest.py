"""A shop server and a headless Chromium for the console's browser tests, one of each
per module (starting them is most of the module's time)."""

from __future__ import annotations

import json
import secrets
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest

from bastion import Runtime
from bastion.testing import DatabaseFactory, RuntimeFactory, require_service
from examples.shop.app import app as shop_app
from tests.support.servers import bastion_server, shop_env

CHROMIUM = "/usr/bin/chromium"
ADMIN_EMAIL = "console-admin@example.com"
PASSWORD = "correct horse battery staple"


@dataclass
class Shop:
    url: str
    outbox: Path
    """The mail outbox: a plain file stands in its place until a test clears it, so
    every email job fails until then."""
    runtime: Runtime
    """A runtime of the test's own on the server's database (it plays another process)."""


@dataclass
class Receiver:
    """A webhook endpoint on loopback that answers 200 and keeps what it got."""

    url: str
    bodies: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """The system Chromium, headless (skipped without it, failed in CI)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require_service("the playwright package is not installed")
    if shutil.which(CHROMIUM) is None:
        require_service(f"no Chromium at {CHROMIUM} (apt install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def shop(
    bastion_databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Shop]:
    require_service(getattr(bastion_databases, "unavailable", None))
    database_url = bastion_databases.fresh(shop_app)
    folder = tmp_path_factory.mktemp("console")
    outbox = folder / "outbox"
    outbox.write_text("not a folder")
    env = shop_env(
        database_url,
        BASTION_JOBS_EMBEDDED_WORKER="true",
        BASTION_JOBS_POLL_INTERVAL_S="0.1",
        BASTION_METRICS_STATS_FLUSH_S="0.5",
        BASTION_MAIL_BACKEND="file",
        BASTION_MAIL_OUTBOX_DIR=str(outbox),
        BASTION_RATELIMIT_ENABLED="false",
        # 404s go to the error log too, so that a test can make errors at will.
        BASTION_ERRORS_LOG_CODES='["not_found"]',
        SHOP_ADMIN_EMAIL=ADMIN_EMAIL,
        SHOP_ADMIN_PASSWORD=PASSWORD,
    )
    runtime = RuntimeFactory(shop_app, database_url, {"shop": {"seed_demo_data": False}})()
    try:
        with bastion_server(env, folder / "server.log") as url:
            yield Shop(url, outbox, runtime)
    finally:
        # Playwright's sync API runs an event loop on this thread: shut down on another.
        closing = threading.Thread(target=anyio.run, args=(runtime.shutdown,))
        closing.start()
        closing.join()
        bastion_databases.drop(database_url)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    bodies: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            bodies.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            del format, args

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Receiver(
            f"http://127.0.0.1:{server.server_port}/hooks/{secrets.token_hex(4)}", bodies
        )
    finally:
        server.shutdown()
        server.server_close()
