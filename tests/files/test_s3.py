"""The S3 storage against a real moto server process: uploads, presigned downloads behind
the access checks, refused uploads that never reach the bucket, an unreachable bucket."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import select

from bastion import Runtime
from bastion.auth.audit import AuditEntry
from bastion.files import BlobNotFound, FileRecord, StorageError
from bastion.settings.sections import FilesSection
from bastion.testing.client import BastionClient, free_port
from bastion.testing.clock import Clock
from bastion.testing.plugin import RuntimeFactory, in_ci
from tests.files.conftest import png
from tests.files.test_files import ADMIN, ALICE, BOB, rows, upload
from tests.support.s3 import MISSING, MotoServer

if MISSING:
    if in_ci():
        pytest.fail(f"CI=true requires this service: {MISSING}", pytrace=False)
    pytest.skip(MISSING, allow_module_level=True)

# Imported only once moto and boto3 are known to be installed.
import boto3

from bastion.files.s3 import S3Storage

PREFIX = "uploads/"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def bucket(moto_server: MotoServer) -> str:
    name = f"bastion-{secrets.token_hex(6)}"
    s3(moto_server).create_bucket(Bucket=name)
    return name


@pytest.fixture
def bastion_settings_overrides(moto_server: MotoServer, bucket: str) -> dict[str, Any]:
    return {"files": {**moto_server.settings(bucket, prefix=PREFIX), "max_bytes": 64 * 1024}}


def s3(server: MotoServer) -> Any:
    settings = server.settings("unused")
    return boto3.client(
        "s3",
        endpoint_url=server.url,
        region_name=settings["s3_region"],
        aws_access_key_id=settings["s3_access_key_id"],
        aws_secret_access_key=settings["s3_secret_access_key"],
    )


def objects(server: MotoServer, bucket: str) -> list[str]:
    listing = s3(server).list_objects_v2(Bucket=bucket)
    return [item["Key"] for item in listing.get("Contents", [])]


async def presigned(client: BastionClient, url: str) -> str:
    response = await client.get(url)
    assert response.status_code == 307, response.text
    assert response.headers["cache-control"] == "no-store"
    return response.headers["location"]


async def test_an_upload_lands_in_the_bucket_and_downloads_through_a_presigned_url(
    client: BastionClient, runtime: Runtime, moto_server: MotoServer, bucket: str
) -> None:
    data = png(16, 16)
    body = await upload(client, data)
    assert body["status"] == 201
    [row] = rows(runtime)
    assert objects(moto_server, bucket) == [PREFIX + row.storage_key]

    with client.acting_as(ALICE):
        location = await presigned(client, str(body["url"]))
    assert location.startswith(f"{moto_server.url}/{bucket}/{PREFIX}")
    assert "X-Amz-Signature=" in location
    async with httpx.AsyncClient() as s3_client:
        response = await s3_client.get(location)
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-disposition"] == f'inline; filename="{body["id"]}.png"'


async def test_the_presigned_url_lives_no_longer_than_the_checked_url(
    client: BastionClient, runtime: Runtime, clock: Clock
) -> None:
    # moto serves expired presigned URLs, so the expiry is checked by its parameters:
    # S3 refuses a URL once X-Amz-Date + X-Amz-Expires has passed.
    body = await upload(client, png(), access="signed")
    clock.shift(200)
    query = parse_qs(urlsplit(await presigned(client, str(body["url"]))).query)
    signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert signed_at == clock.now().replace(microsecond=0)
    assert query["X-Amz-Expires"] == ["100"]

    longer = runtime.files.url(str(body["id"]), ttl_s=3600)
    query = parse_qs(urlsplit(await presigned(client, longer)).query)
    assert query["X-Amz-Expires"] == ["300"]

    clock.shift(100)
    response = await client.get(str(body["url"]))
    assert (response.status_code, response.json()["code"]) == (403, "url_expired")
    assert clock.now() >= signed_at + timedelta(seconds=100)


async def test_only_the_owner_or_an_admin_gets_a_presigned_url_and_each_grant_is_audited(
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
        assert "location" not in response.headers
    with client.acting_as(ALICE):
        await presigned(client, url)
    with client.acting_as(ADMIN):
        await presigned(client, url)
    with runtime.database.transaction() as session:
        actors = session.scalars(
            select(AuditEntry.actor_id).where(AuditEntry.action == "file.download")
        ).all()
    assert sorted(actors) == ["alice", "root"]


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (png(4, 4, noise=100 * 1024), 413, "payload_too_large"),
        (
            b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>",
            415,
            "unsupported_media_type",
        ),
    ],
    ids=["oversize", "not-an-image"],
)
async def test_a_refused_upload_never_reaches_the_bucket(
    client: BastionClient,
    runtime: Runtime,
    moto_server: MotoServer,
    bucket: str,
    data: bytes,
    status: int,
    code: str,
) -> None:
    body = await upload(client, data)
    assert (body["status"], body["code"]) == (status, code)
    assert rows(runtime) == []
    assert objects(moto_server, bucket) == []


async def test_deleting_removes_the_object(
    client: BastionClient, runtime: Runtime, moto_server: MotoServer, bucket: str
) -> None:
    body = await upload(client, png())
    with client.acting_as(ALICE):
        assert (await client.delete(f"/api/v1/files/{body['id']}")).status_code == 204
    assert rows(runtime) == []
    assert objects(moto_server, bucket) == []


async def test_an_unreachable_bucket_is_503_and_leaves_no_row(
    make_runtime: RuntimeFactory, moto_server: MotoServer, bucket: str
) -> None:
    nowhere = {**moto_server.settings(bucket), "s3_endpoint_url": f"http://127.0.0.1:{free_port()}"}
    runtime = make_runtime(files=nowhere)
    await runtime.startup()
    async with BastionClient(runtime.asgi()) as client:
        body = await upload(client, png())
        assert (body["status"], body["code"]) == (503, "service_unavailable")
        assert rows(runtime) == []

        # A file stored before the outage: its download is a 503 too, not a 500.
        with runtime.database.transaction() as session:
            session.add(
                FileRecord(
                    id="f1",
                    storage_key="ab/" + "0" * 32,
                    content_type="image/png",
                    size=1,
                    sha256="0" * 64,
                    owner_id=None,
                    access="signed",
                )
            )
        response = await client.get(runtime.files.url("f1"))
        assert (response.status_code, response.json()["code"]) == (503, "service_unavailable")


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_the_storage_saves_reads_measures_and_deletes(
    moto_server: MotoServer, bucket: str
) -> None:
    storage = S3Storage(FilesSection(**moto_server.settings(bucket)))
    big = bytes(range(256)) * 40_000  # 10 MB: past boto3's multipart threshold
    key = await storage.save(chunks(big[:5_000_000], big[5_000_000:]))
    assert await storage.size(key) == len(big)
    assert b"".join([part async for part in storage.open(key)]) == big
    await storage.delete(key)
    await storage.delete(key)
    with pytest.raises(BlobNotFound):
        await storage.size(key)
    with pytest.raises(BlobNotFound):
        [part async for part in storage.open(key)]


async def test_a_failing_stream_uploads_nothing(moto_server: MotoServer, bucket: str) -> None:
    async def failing() -> AsyncIterator[bytes]:
        yield b"partial"
        raise RuntimeError("client went away")

    storage = S3Storage(FilesSection(**moto_server.settings(bucket)))
    with pytest.raises(RuntimeError):
        await storage.save(failing())
    assert objects(moto_server, bucket) == []


async def test_keys_it_could_not_have_made_are_refused(moto_server: MotoServer) -> None:
    storage = S3Storage(FilesSection(**moto_server.settings("any")))
    for key in ["../x", "ab/cd", "", "ab/" + "0" * 32 + "/../y"]:
        with pytest.raises(BlobNotFound):
            storage.object_name(key)
        await storage.delete(key)


async def test_a_missing_bucket_is_a_storage_error(moto_server: MotoServer) -> None:
    storage = S3Storage(FilesSection(**moto_server.settings("no-such-bucket")))
    with pytest.raises(StorageError):
        await storage.save(chunks(b"x"))


def test_the_s3_backend_needs_a_bucket_and_both_keys() -> None:
    with pytest.raises(ValidationError, match="s3_bucket"):
        FilesSection(backend="s3")
    with pytest.raises(ValidationError, match="go together"):
        FilesSection(backend="s3", s3_bucket="b", s3_access_key_id="k")
