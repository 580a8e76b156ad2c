"""Every bad input answers its documented status and code as problem+json, in three locales."""

from __future__ import annotations

from typing import Any

import pytest

from bastion.errors import ErrorCatalog
from bastion.testing import BastionClient
from tests.examples.shop.conftest import ADMIN

API = "/api/v1"
LOCALES = ["en", "es", "tr"]
CATALOG = ErrorCatalog.with_platform_messages()


@pytest.fixture
def bastion_settings_overrides() -> dict[str, Any]:
    return {"server": {"max_body_bytes": 4096}}


async def _tampered_cursor(client: BastionClient) -> str:
    cursor: str = (await client.get(f"{API}/products?limit=2")).json()["pagination"]["next_cursor"]
    flipped = "A" if cursor[-3] != "A" else "B"
    return cursor[:-3] + flipped + cursor[-2:]


CASES: list[tuple[str, str, str, dict[str, Any], int, str, str | None]] = [
    # name, method, path, request kwargs, status, code, field
    (
        "malformed json",
        "POST",
        "/products",
        {"content": b'{"name": ', "headers": {"content-type": "application/json"}},
        400,
        "invalid_json",
        None,
    ),
    (
        "wrong type",
        "POST",
        "/products",
        {"json": {"name": "x", "price_cents": "cheap", "category_id": 1}},
        422,
        "validation_failed",
        "price_cents",
    ),
    ("limit too high", "GET", "/products?limit=101", {}, 422, "validation_failed", "limit"),
    ("limit too low", "GET", "/products?limit=0", {}, 422, "validation_failed", "limit"),
    ("limit not a number", "GET", "/products?limit=ten", {}, 422, "validation_failed", "limit"),
    ("unknown sort", "GET", "/products?sort=cheapest", {}, 422, "validation_failed", "sort"),
    (
        "garbage cursor",
        "GET",
        "/products?cursor=not-a-cursor",
        {},
        422,
        "validation_failed",
        "cursor",
    ),
    (
        "inverted price range",
        "GET",
        "/products?price_min=500&price_max=100",
        {},
        422,
        "validation_failed",
        "price_max",
    ),
    ("unknown id", "GET", "/products/999999", {}, 404, "not_found", None),
    ("id not a number", "GET", "/products/abc", {}, 422, "validation_failed", "product_id"),
    (
        "oversized body",
        "POST",
        "/products",
        {"content": b"x" * 5000, "headers": {"content-type": "application/json"}},
        413,
        "payload_too_large",
        None,
    ),
    ("unknown route", "GET", "/nowhere", {}, 404, "not_found", None),
    ("wrong method", "PUT", "/products/1", {"json": {}}, 405, "method_not_allowed", None),
    (
        "json not accepted",
        "GET",
        "/products/1",
        {"headers": {"accept": "text/csv"}},
        406,
        "not_acceptable",
        None,
    ),
]


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize(
    ("name", "method", "path", "kwargs", "status", "code", "field"),
    CASES,
    ids=[c[0] for c in CASES],
)
async def test_bad_input_is_a_localized_problem(
    client: BastionClient,
    locale: str,
    name: str,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    code: str,
    field: str | None,
) -> None:
    kwargs = dict(kwargs)
    headers = {"Accept-Language": f"{locale};q=0.9, en;q=0.1", **kwargs.pop("headers", {})}
    with client.acting_as(ADMIN):
        response = await client.request(method, API + path, headers=headers, **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    request_id = response.headers["x-request-id"]
    problem = response.json()
    assert problem["code"] == code
    assert problem["status"] == status
    assert problem["request_id"] == request_id
    assert problem["type"] == f"urn:bastion:error:{code}"
    expected = CATALOG.render(code, locale, {"limit": 4096})
    assert (problem["title"], problem["detail"]) == (expected.title, expected.detail)
    if field is not None:
        assert [e["field"] for e in problem["errors"]] == [field]
        assert problem["errors"][0]["message"]


async def test_tampered_cursor_is_refused_in_every_locale(client: BastionClient) -> None:
    cursor = await _tampered_cursor(client)
    for locale in LOCALES:
        response = await client.get(
            f"{API}/products?limit=2&cursor={cursor}", headers={"Accept-Language": locale}
        )
        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "invalid_cursor"
        assert response.json()["errors"][0]["message"] == CATALOG.render_field(
            "invalid_cursor", locale, {}
        )


async def test_a_cursor_from_another_listing_is_refused(client: BastionClient) -> None:
    cursor = (await client.get(f"{API}/products?limit=2&sort=price")).json()["pagination"][
        "next_cursor"
    ]
    response = await client.get(f"{API}/products?limit=2&sort=name&cursor={cursor}")
    assert response.status_code == 422
    assert response.json()["errors"][0]["code"] == "invalid_cursor"


async def test_lang_parameter_wins_over_accept_language(client: BastionClient) -> None:
    response = await client.get(f"{API}/products/999999?lang=tr", headers={"Accept-Language": "es"})
    assert response.json()["title"] == CATALOG.render("not_found", "tr", {}).title


async def test_field_messages_are_translated(client: BastionClient) -> None:
    response = await client.get(f"{API}/products?limit=101", headers={"Accept-Language": "es"})
    assert response.json()["errors"] == [
        {
            "field": "limit",
            "code": "less_than_equal",
            "message": "Introduce un valor de como máximo 100.",
        }
    ]
