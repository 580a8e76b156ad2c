"""``bastion routes``: every HTTP route of the app, as the server will serve it.

The table is read from the FastAPI application the runtime builds, so it shows
the real paths (API prefix included), the routers mounted beside the functions
and bastion's own routes (health, docs, OpenAPI).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import fastapi.routing
from fastapi.routing import APIRoute
from rich.table import Table
from starlette.routing import BaseRoute, Mount, Route

from bastion.app import Runtime
from bastion.cli.discovery import AppArgument, ConfigOption, locate
from bastion.cli.output import reporting, stdout

_KIND_STYLE = {
    "query": "cyan",
    "mutation": "magenta",
    "action": "yellow",
    "router": "blue",
    "platform": "dim",
}


@dataclass(frozen=True)
class RouteRow:
    """One row of the table.

    Attributes:
        kind: ``query``, ``mutation``, ``action``, ``router`` (a mounted FastAPI
            router) or ``platform`` (bastion's own routes).
    """

    method: str
    path: str
    kind: str
    function: str
    permissions: tuple[str, ...] = ()


def routes(app: AppArgument = None, config: ConfigOption = None) -> None:
    """List the app's routes: method, path, kind, function and required permissions."""
    with reporting():
        project = locate(app, config)
        runtime = project.runtime()
        table = Table(title=f"Routes of {project.app.name}", title_justify="left")
        table.add_column("Method", style="bold", no_wrap=True)
        table.add_column("Path", no_wrap=True)
        table.add_column("Kind", no_wrap=True)
        table.add_column("Function", no_wrap=True)
        table.add_column("Permissions")
        for row in route_rows(runtime):
            style = _KIND_STYLE.get(row.kind, "")
            table.add_row(
                row.method,
                row.path,
                f"[{style}]{row.kind}[/]" if style else row.kind,
                row.function,
                ", ".join(row.permissions) or "[dim]-[/]",
            )
        stdout().print(table)


def route_rows(runtime: Runtime) -> Iterator[RouteRow]:
    """The rows of the runtime's app, in the order FastAPI matches them."""
    app, api = runtime.app, runtime.api()
    specs = {(app.api_prefix + spec.path, spec.method, spec.name): spec for spec in app.functions}
    # Included routes keep their endpoint objects: identity tells router routes apart.
    from_routers = {
        route.endpoint
        for router, _ in runtime.app_routers
        for route in _flat(router.routes)
        if getattr(route, "endpoint", None) is not None
    }
    for route in _flat(api.routes):
        for method, path, name, endpoint in _describe(route):
            spec = specs.get((path, method, name))
            if spec is not None:
                yield RouteRow(
                    method, path, spec.kind.value, spec.name, tuple(sorted(spec.permissions))
                )
            elif endpoint is not None and endpoint in from_routers:
                yield RouteRow(method, path, "router", name)
            else:
                yield RouteRow(method, path, "platform", name)


def _flat(routes: Sequence[BaseRoute]) -> Iterator[Any]:
    """Every route, with included routers expanded.

    Recent FastAPI keeps an included router as one lazy entry of ``routes`` and
    offers ``iter_route_contexts`` to expand it (each context has the route's
    effective path, methods, name and endpoint); older versions copy the routes in.
    """
    expand = getattr(fastapi.routing, "iter_route_contexts", None)
    if expand is None:
        yield from routes
    else:
        yield from expand(routes)


def _describe(route: Any) -> Iterator[tuple[str, str, str, Callable[..., Any] | None]]:
    original = getattr(route, "original_route", route)
    name = str(getattr(route, "name", "") or "")
    if isinstance(original, Mount):
        yield "GET", f"{route.path}/…", name, None
    elif isinstance(original, APIRoute | Route):
        # HEAD is implied by GET; listing it twice would only add noise.
        methods = sorted(set(route.methods or ()) - {"HEAD"}) or ["GET"]
        for method in methods:
            yield method, str(route.path), name, route.endpoint
