"""Uploads, signed downloads, access policy and audit through the HTTP API (both databases)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select

from bastion import Runtime
from bastion.auth.audit import AuditEntry
from bastion.auth.principal import Principal
from bastion.errors import PayloadTooLarge
from bastion.files import FileRecord
from bastion.testing.client import BastionClient
from bastion.testing.clock import Clock
from tests.files.conftest import JPEG, png

ALICE = Principal("alice")
BOB = Principal("bob")
ADMIN = Principal("root", permissions=frozenset({"write:all"}))


async def upload(
    client: BastionClient,
    data: bytes,
    *,
    name: str = "photo.png",
    content_type: str | None = "image/png",
    as_user: Principal | None = ALICE,
    access: str = "owner",
) -> dict[str, object]:
    part = (name, data, content_type) if content_type else (name, data)
    with client.acting_as(as_user):
        response = await client.post(
            f"/api/v1/files?access={access}",
            files={"file": part},
        )
    return {"status": response.status_code, **response.json()}


def rows(runtime: Runtime) -> list[FileRecord]:
    with runtime.database.transaction() as session:
        return list(session.scalars(select(FileRecord)))


def blobs(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


def block_folder(root: Path) -> None:
    # A file where the folder should be: no write can succeed, even as root.
    root.parent.mkdir(parents=True, exist_ok=True)
    root.write_text("not a folder")


def downloads_audited(runtime: Runtime) -> int:
    with runtime.database.transaction() as session:
        count = session.scalar(select(func.count()).where(AuditEntry.action == "file.download"))
    return int(count or 0)


def tamper(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    path = parts.path
    if "id" in changes:
        path = f"/files/{changes.pop('id')}"
    query.update(changes)
    return path + "?" + "&".join(f"{key}={value}" for key, value in query.items())


async def test_a_png_uploads_and_downloads_through_its_signed_url(
    client: BastionClient, runtime: Runtime, files_root: Path
) -> None:
    data = png(4, 4)
    body = await upload(client, data)
    assert body["status"] == 201
    assert body["content_type"] == "image/png"
    assert body["size"] == len(data)
    assert str(body["url"]).startswith(f"/files/{body['id']}?expires=")

    with client.acting_as(ALICE):
        response = await client.get(str(body["url"]))
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "image/png"
    assert_cache_control(response.headers["cache-control"], "private")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-disposition"] == f'inline; filename="{body["id"]}.png"'

    [row] = rows(runtime)
    assert (row.id, row.owner_id, row.access) == (body["id"], "alice", "owner")
    assert row.sha256 == hashlib.sha256(data).hexdigest()
    assert row.storage_key not in str(body["url"])
    assert "photo" not in row.storage_key
    assert len(blobs(files_root)) == 1


async def test_a_jpeg_declared_with_an_alias_is_accepted(client: BastionClient) -> None:
    body = await upload(client, JPEG, name="me.jpg", content_type="image/jpg")
    assert (body["status"], body["content_type"]) == (201, "image/jpeg")


async def test_an_undescriptive_declared_type_lets_the_sniffed_type_stand(
    client: BastionClient,
) -> None:
    body = await upload(client, png(), name="blob", content_type="application/octet-stream")
    assert (body["status"], body["content_type"]) == (201, "image/png")


async def test_a_declared_type_naming_another_type_is_415(
    client: BastionClient, runtime: Runtime, files_root: Path
) -> None:
    body = await upload(client, png(), name="photo.jpg", content_type="image/jpeg")
    assert (body["status"], body["code"]) == (415, "unsupported_media_type")
    assert rows(runtime) == []
    assert blobs(files_root) == []


@pytest.mark.parametrize(
    "data",
    [
        b"<!DOCTYPE html><html><script>alert(1)</script></html>",
        b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>",
        b"",
        b"\x89PN",
    ],
    ids=["html", "svg", "empty", "truncated-png"],
)
async def test_a_png_name_over_other_bytes_is_415(
    client: BastionClient, runtime: Runtime, files_root: Path, data: bytes
) -> None:
    body = await upload(client, data, name="cat.png", content_type="image/png")
    assert (body["status"], body["code"]) == (415, "unsupported_media_type")
    assert rows(runtime) == []
    assert blobs(files_root) == []


async def test_a_pdf_is_not_an_allowed_type_by_default(client: BastionClient) -> None:
    body = await upload(client, b"%PDF-1.7\n%\xe2\xe3\n", name="a.pdf", content_type=None)
    assert (body["status"], body["code"]) == (415, "unsupported_media_type")


async def test_an_upload_over_the_limit_is_413_and_leaves_nothing(
    client: BastionClient, runtime: Runtime, files_root: Path
) -> None:
    body = await upload(client, png(4, 4, noise=100 * 1024))
    assert (body["status"], body["code"]) == (413, "payload_too_large")
    assert "65536" in str(body["detail"])
    assert rows(runtime) == []
    assert blobs(files_root) == []


async def test_an_endless_stream_is_cut_at_the_limit(runtime: Runtime, files_root: Path) -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        yield png()
        while True:
            sent += 8192
            yield bytes(8192)

    with pytest.raises(PayloadTooLarge):
        await runtime.files.upload(endless(), owner="alice")
    assert sent < 80 * 1024
    assert rows(runtime) == []
    assert blobs(files_root) == []


async def test_an_upload_call_may_allow_other_types_and_a_pdf_downloads_as_attachment(
    client: BastionClient, runtime: Runtime
) -> None:
    pdf = b"%PDF-1.7\n1 0 obj<<>>endobj\n%%EOF\n"

    async def chunks() -> AsyncIterator[bytes]:
        yield pdf[:3]
        yield pdf[3:]

    stored = await runtime.files.upload(
        chunks(), owner=None, access="signed", allowed_types={"application/pdf"}
    )
    assert (stored.content_type, stored.size) == ("application/pdf", len(pdf))
    response = await client.get(runtime.files.url(stored.id))
    assert response.status_code == 200
    assert response.content == pdf
    assert response.headers["content-disposition"].startswith("attachment;")


async def test_anonymous_uploads_are_401(client: BastionClient, runtime: Runtime) -> None:
    body = await upload(client, png(), as_user=None)
    assert (body["status"], body["code"]) == (401, "not_authenticated")
    assert rows(runtime) == []


async def test_a_body_that_is_not_multipart_is_415(client: BastionClient) -> None:
    with client.acting_as(ALICE):
        response = await client.post(
            "/api/v1/files", content=png(), headers={"content-type": "image/png"}
        )
    assert (response.status_code, response.json()["code"]) == (415, "unsupported_media_type")


async def test_a_multipart_body_without_the_file_field_is_422(client: BastionClient) -> None:
    with client.acting_as(ALICE):
        response = await client.post(
            "/api/v1/files", files={"other": ("a.png", png(), "image/png")}
        )
    body = response.json()
    assert (response.status_code, body["code"]) == (422, "validation_failed")
    assert body["errors"][0]["field"] == "file"


async def test_an_expired_url_is_403_url_expired(client: BastionClient, clock: Clock) -> None:
    body = await upload(client, png(), access="signed")
    clock.shift(299)
    response = await client.get(str(body["url"]))
    assert response.status_code == 200
    assert response.headers["cache-control"] == "private, max-age=1"
    clock.shift(1)
    response = await client.get(str(body["url"]))
    assert (response.status_code, response.json()["code"]) == (403, "url_expired")


async def test_a_url_with_a_custom_ttl(
    client: BastionClient, runtime: Runtime, clock: Clock
) -> None:
    body = await upload(client, png(), access="signed")
    url = runtime.files.url(str(body["id"]), ttl_s=3600)
    clock.shift(1800)
    assert (await client.get(url)).status_code == 200


async def test_tampered_urls_are_403_invalid_signature(client: BastionClient) -> None:
    first = await upload(client, png(), access="signed")
    second = await upload(client, png(2, 2), access="signed")
    url = str(first["url"])
    sig = parse_qs(urlsplit(url).query)["sig"][0]
    expires = int(parse_qs(urlsplit(url).query)["expires"][0])
    forged = [
        tamper(url, sig=("0" if sig[0] != "0" else "1") + sig[1:]),
        tamper(url, id=str(second["id"])),
        tamper(url, expires=str(expires + 3600)),
        tamper(url, expires=str(expires - 3600)),
        tamper(url, expires="x"),
        url.split("&sig=")[0],
        f"/files/{first['id']}",
    ]
    for target in forged:
        response = await client.get(target)
        assert (response.status_code, response.json()["code"]) == (403, "invalid_signature"), target


async def test_owner_files_need_the_owner_or_an_admin(
    client: BastionClient, runtime: Runtime
) -> None:
    body = await upload(client, png(), access="owner")
    url = str(body["url"])
    with client.acting_as(None):
        response = await client.get(url)
        assert (response.status_code, response.json()["code"]) == (401, "not_authenticated")
    with client.acting_as(BOB):
        response = await client.get(url)
        assert (response.status_code, response.json()["code"]) == (403, "permission_denied")
    with client.acting_as(ALICE):
        assert (await client.get(url)).status_code == 200
    with client.acting_as(ADMIN):
        assert (await client.get(url)).status_code == 200
    assert downloads_audited(runtime) == 2


async def test_admin_files_need_an_admin(client: BastionClient) -> None:
    body = await upload(client, png(), access="admin")
    with client.acting_as(ALICE):
        assert (await client.get(str(body["url"]))).status_code == 403
    with client.acting_as(ADMIN):
        assert (await client.get(str(body["url"]))).status_code == 200


async def test_signed_files_take_the_url_as_the_capability_and_are_audited(
    client: BastionClient, runtime: Runtime
) -> None:
    body = await upload(client, png(), access="signed")
    with client.acting_as(None):
        assert (await client.get(str(body["url"]))).status_code == 200
    with runtime.database.transaction() as session:
        [entry] = session.scalars(select(AuditEntry)).all()
        assert (entry.actor_id, entry.target_type, entry.target_id) == (None, "file", body["id"])
        assert entry.data == {"access": "signed"}


async def test_public_files_are_not_audited_and_cache_publicly(
    client: BastionClient, runtime: Runtime
) -> None:
    body = await upload(client, png(), access="public")
    response = await client.get(str(body["url"]))
    assert_cache_control(response.headers["cache-control"], "public")
    assert downloads_audited(runtime) == 0


async def test_deleting_removes_the_row_and_the_blob(
    client: BastionClient, runtime: Runtime, files_root: Path
) -> None:
    body = await upload(client, png(), access="signed")
    with client.acting_as(BOB):
        response = await client.delete(f"/api/v1/files/{body['id']}")
        assert (response.status_code, response.json()["code"]) == (403, "permission_denied")
    with client.acting_as(ALICE):
        assert (await client.delete(f"/api/v1/files/{body['id']}")).status_code == 204
        assert (await client.delete(f"/api/v1/files/{body['id']}")).status_code == 404
    assert rows(runtime) == []
    assert blobs(files_root) == []
    response = await client.get(str(body["url"]))
    assert (response.status_code, response.json()["code"]) == (404, "not_found")


async def test_the_service_deletes_too(runtime: Runtime, files_root: Path) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield png()

    stored = await runtime.files.upload(chunks(), owner="alice")
    assert await runtime.files.get(stored.id) == stored
    assert await runtime.files.delete(stored.id) is True
    assert await runtime.files.get(stored.id) is None
    assert blobs(files_root) == []


async def test_an_unwritable_storage_is_503_without_a_row(
    client: BastionClient, runtime: Runtime, files_root: Path
) -> None:
    block_folder(files_root)
    body = await upload(client, png())
    assert (body["status"], body["code"]) == (503, "service_unavailable")
    assert rows(runtime) == []


async def test_the_routes_are_in_the_openapi_document(client: BastionClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    upload_body = paths["/api/v1/files"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in upload_body
    assert {"get"} <= set(paths["/files/{file_id}"])
    assert {"delete"} <= set(paths["/api/v1/files/{file_id}"])


def assert_cache_control(value: str, scope: str) -> None:
    """Cached as long as the URL has left: the 300 s TTL, rounded up to a tenth of it."""
    kind, _, age = value.partition(", max-age=")
    assert kind == scope
    assert 300 <= int(age) <= 330
