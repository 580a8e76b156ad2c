"""``bastion routes`` and ``bastion openapi``."""

from __future__ import annotations

import json
from pathlib import Path

from bastion.cli.discovery import locate
from bastion.cli.routes import RouteRow, route_rows
from tests.cli.conftest import Runner


def test_route_rows_describe_functions_routers_and_platform_routes(project: Path) -> None:
    found = locate(None, None)

    rows = list(route_rows(found.runtime()))

    assert RouteRow("GET", "/api/v1/items/{item_id}", "query", "get_item") in rows
    assert RouteRow("POST", "/api/v1/items", "mutation", "create_item", ("write:all",)) in rows
    assert RouteRow("POST", "/api/v1/slow", "action", "slow") in rows
    assert RouteRow("GET", "/plain/ping", "router", "ping") in rows
    assert RouteRow("GET", "/health/live", "platform", "live") in rows
    # HEAD is implied by GET and not listed.
    assert all(row.method != "HEAD" for row in rows)


def test_routes_prints_a_table(bastion: Runner, project: Path) -> None:
    result = bastion("routes")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    create = next(line for line in lines if "create_item" in line)
    for cell in ("POST", "/api/v1/items", "mutation", "write:all"):
        assert cell in create
    for name in ("get_item", "slow", "ping", "/health/ready"):
        assert name in result.stdout


def test_openapi_to_stdout_is_plain_json(bastion: Runner, project: Path) -> None:
    result = bastion("openapi")

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["openapi"].startswith("3.1")
    assert document["info"]["title"] == "cliapp"
    assert {"/api/v1/items", "/api/v1/items/{item_id}", "/plain/ping"} <= set(document["paths"])


def test_openapi_to_a_file(bastion: Runner, project: Path) -> None:
    result = bastion("openapi", "-o", "build/openapi.json")

    assert result.exit_code == 0, result.output
    document = json.loads((project / "build" / "openapi.json").read_text(encoding="utf-8"))
    assert "post" in document["paths"]["/api/v1/items"]
    assert "build/openapi.json" in result.stderr
    # Generating the document neither connects to nor creates the database.
    assert not (project / "var" / "cliapp.db").exists()


def test_routes_of_routers_built_by_the_runtime_are_the_app_s(tmp_path: Path) -> None:
    from bastion.testing.plugin import _test_settings
    from examples.shop.app import app as shop

    runtime = shop.runtime(_test_settings(shop, f"sqlite:///{tmp_path}/shop.db", {}))
    try:
        rows = list(route_rows(runtime))
    finally:
        runtime.database.dispose()
    assert RouteRow(
        "POST", "/api/v1/products/{product_id}/image", "router", "upload_product_image"
    ) in [RouteRow(row.method, row.path, row.kind, row.function) for row in rows]
