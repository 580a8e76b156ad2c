"""Product images: the admin upload, signed ``image_url`` downloads and what is refused
(shop-api.md, Catalog)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from bastion import Principal, Runtime
from bastion.files import FileRecord
from bastion.testing import BastionClient
from bastion.testing.clock import Clock
from examples.shop.images import MAX_IMAGE_BYTES
from examples.shop.models import Product
from tests.examples.shop.conftest import ADMIN, USER
from tests.files.conftest import JPEG, png

API = "/api/v1"
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(24)


@pytest.fixture
def files_root(tmp_path: Path) -> Path:
    return tmp_path / "files"


@pytest.fixture
def bastion_settings_overrides(files_root: Path) -> dict[str, Any]:
    return {"shop": {"demo_products": 3}, "files": {"root": str(files_root)}}


async def upload(
    client: BastionClient,
    data: bytes,
    *,
    product_id: int = 1,
    content_type: str = "image/png",
    as_user: Principal | None = ADMIN,
) -> tuple[int, dict[str, Any]]:
    with client.acting_as(as_user):
        response = await client.post(
            f"{API}/products/{product_id}/image", files={"file": ("p.png", data, content_type)}
        )
    return response.status_code, response.json()


def stored_files(runtime: Runtime) -> list[FileRecord]:
    with runtime.database.read_transaction() as session:
        return list(session.scalars(select(FileRecord)))


def blobs(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


def image_of(runtime: Runtime, product_id: int) -> str | None:
    with runtime.database.read_transaction() as session:
        product = session.get(Product, product_id)
        assert product is not None
        return product.image_file_id


@pytest.mark.parametrize(
    ("data", "content_type", "media_type"),
    [
        (png(8, 8), "image/png", "image/png"),
        (JPEG, "image/jpeg", "image/jpeg"),
        (WEBP, "image/webp", "image/webp"),
    ],
    ids=["png", "jpeg", "webp"],
)
async def test_an_admin_uploads_an_image_and_anyone_fetches_it_through_its_signed_url(
    client: BastionClient, runtime: Runtime, data: bytes, content_type: str, media_type: str
) -> None:
    status, body = await upload(client, data, content_type=content_type)
    assert status == 201
    assert set(body) == {"url", "expires_at"}
    assert body["url"].startswith("/files/")

    with client.acting_as(None):
        response = await client.get(body["url"])
        assert response.status_code == 200
        assert response.content == data
        assert response.headers["content-type"] == media_type

        product = (await client.get(f"{API}/products/1")).json()
    assert urlsplit(product["image_url"]).path == urlsplit(body["url"]).path
    assert (await client.get(product["image_url"])).content == data


async def test_listings_carry_signed_image_urls_or_null(client: BastionClient) -> None:
    status, body = await upload(client, png(), product_id=2)
    assert status == 201
    listing = (await client.get(f"{API}/products?limit=100")).json()["data"]
    urls = {product["id"]: product["image_url"] for product in listing}
    assert urlsplit(urls.pop(2)).path == urlsplit(body["url"]).path
    assert set(urls.values()) == {None}


async def test_a_new_image_replaces_the_old_one(
    client: BastionClient, runtime: Runtime, files_root: Path
) -> None:
    _, first = await upload(client, png(1, 1))
    _, second = await upload(client, png(2, 2))
    [row] = stored_files(runtime)
    assert image_of(runtime, 1) == row.id
    assert len(blobs(files_root)) == 1
    response = await client.get(first["url"])
    assert (response.status_code, response.json()["code"]) == (404, "not_found")
    assert (await client.get(second["url"])).status_code == 200


async def test_a_tampered_url_is_403_invalid_signature(client: BastionClient) -> None:
    _, first = await upload(client, png(), product_id=1)
    _, second = await upload(client, png(3, 3), product_id=2)
    url = first["url"]
    query = parse_qs(urlsplit(url).query)
    sig, expires = query["sig"][0], int(query["expires"][0])
    other_id = urlsplit(second["url"]).path.rsplit("/", 1)[1]
    forged = [
        url.replace(f"sig={sig}", "sig=" + ("0" if sig[0] != "0" else "1") + sig[1:]),
        url.replace(f"expires={expires}", f"expires={expires + 3600}"),
        "/files/" + other_id + "?" + urlsplit(url).query,
        urlsplit(url).path,
    ]
    for target in forged:
        response = await client.get(target)
        assert (response.status_code, response.json()["code"]) == (403, "invalid_signature")


async def test_an_expired_url_is_403_url_expired(
    client: BastionClient, runtime: Runtime, clock: Clock
) -> None:
    _, body = await upload(client, png())
    ttl = runtime.settings.files.url_ttl_s
    clock.shift(ttl - 1)
    assert (await client.get(body["url"])).status_code == 200
    clock.shift(1)
    response = await client.get(body["url"])
    assert (response.status_code, response.json()["code"]) == (403, "url_expired")
    # A fresh read of the product signs a fresh URL.
    product = (await client.get(f"{API}/products/1")).json()
    assert (await client.get(product["image_url"])).status_code == 200


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code"),
    [
        (png(8, 8, noise=MAX_IMAGE_BYTES), "image/png", 413, "payload_too_large"),
        (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "image/gif", 415, "unsupported_media_type"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/png", 415, "unsupported_media_type"),
        (b"%PDF-1.7\n", "application/pdf", 415, "unsupported_media_type"),
    ],
    ids=["over-5-MiB", "gif", "svg-named-png", "pdf"],
)
async def test_a_refused_image_stores_nothing(
    client: BastionClient,
    runtime: Runtime,
    files_root: Path,
    data: bytes,
    content_type: str,
    status: int,
    code: str,
) -> None:
    got, body = await upload(client, data, content_type=content_type)
    assert (got, body["code"]) == (status, code)
    assert stored_files(runtime) == []
    assert blobs(files_root) == []
    assert image_of(runtime, 1) is None


async def test_an_image_of_exactly_5_mib_is_accepted(client: BastionClient) -> None:
    image = png(1, 1)
    data = image + bytes(MAX_IMAGE_BYTES - len(image))
    status, _ = await upload(client, data)
    assert status == 201


@pytest.mark.parametrize(
    ("user", "status", "code"),
    [(USER, 403, "permission_denied"), (None, 401, "not_authenticated")],
    ids=["shopper", "anonymous"],
)
async def test_only_admins_upload(
    client: BastionClient,
    runtime: Runtime,
    user: Principal | None,
    status: int,
    code: str,
) -> None:
    got, body = await upload(client, png(), as_user=user)
    assert (got, body["code"]) == (status, code)
    assert stored_files(runtime) == []


async def test_an_unknown_product_is_404_and_stores_nothing(
    client: BastionClient, runtime: Runtime, files_root: Path
) -> None:
    status, body = await upload(client, png(), product_id=999_999)
    assert (status, body["code"]) == (404, "not_found")
    assert stored_files(runtime) == []
    assert blobs(files_root) == []


async def test_shoppers_have_no_general_upload_endpoint(client: BastionClient) -> None:
    with client.acting_as(USER):
        response = await client.post(f"{API}/files", files={"file": ("p.png", png())})
    assert response.status_code in (404, 405)


async def test_the_image_routes_are_in_the_openapi_document(client: BastionClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    upload_body = paths[f"{API}/products/{{product_id}}/image"]["post"]["requestBody"]
    assert "multipart/form-data" in upload_body["content"]
    assert {"get"} <= set(paths["/files/{file_id}"])
