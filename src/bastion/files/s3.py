"""``S3Storage``: blobs as objects in an S3-compatible bucket (AWS S3, MinIO, Ceph...).

boto3 is synchronous, so each of its calls runs in a worker thread: the event loop never
waits on the network. Needs the ``bastion[s3]`` extra.
"""

from __future__ import annotations

import re
import secrets
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Callable
from functools import partial
from typing import TYPE_CHECKING, TypeVar

import anyio
import anyio.to_thread
import boto3
from boto3.exceptions import Boto3Error
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from bastion.files.base import BlobNotFound, StorageError
from bastion.settings.sections import FilesSection

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_T = TypeVar("_T")
_CHUNK = 64 * 1024
#: An upload stays in memory up to this size, then spills to a temporary file: the bytes
#: must be complete (checked for size and type) before anything reaches the bucket.
_SPOOL_BYTES = 1024 * 1024
_KEY = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{32}$")
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
#: An unreachable endpoint fails within seconds (a 503 to the client), not minutes.
_CLIENT_CONFIG = Config(
    connect_timeout=5,
    read_timeout=30,
    retries={"max_attempts": 3, "mode": "standard"},
    signature_version="s3v4",
)


class S3Storage:
    """Keeps each blob as the object ``<s3_prefix><2 hex>/<32 hex>`` of ``s3_bucket``.

    An upload is spooled (in memory up to 1 MiB, on disk beyond) while its checks run,
    and sent with ``upload_fileobj`` once complete: a refused or broken upload never
    reaches the bucket, and large files go up as multipart uploads. Downloads are
    presigned ``GetObject`` URLs (:class:`~bastion.files.base.DirectDownloads`).

    Args:
        settings: The ``[files]`` section (``s3_*`` settings).
        client: A boto3 S3 client to use instead of one built from ``settings``.
    """

    def __init__(self, settings: FilesSection, *, client: S3Client | None = None) -> None:
        self.bucket = settings.s3_bucket
        self.prefix = settings.s3_prefix
        secret = settings.s3_secret_access_key
        self.client: S3Client = client or boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=secret.get_secret_value() if secret else None,
            config=_CLIENT_CONFIG,
        )

    def object_name(self, key: str) -> str:
        """The object of a key; refuses keys this storage could not have made."""
        if not _KEY.fullmatch(key):
            raise BlobNotFound(key)
        return self.prefix + key

    async def save(self, stream: AsyncIterable[bytes]) -> str:
        key = f"{secrets.token_hex(1)}/{secrets.token_hex(16)}"
        spool = anyio.wrap_file(tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES))  # noqa: SIM115
        async with spool:
            async for chunk in stream:
                await spool.write(chunk)
            await spool.seek(0)
            await self._call(
                partial(self.client.upload_fileobj, spool.wrapped, self.bucket, self.prefix + key)
            )
        return key

    async def open(self, key: str) -> AsyncIterator[bytes]:
        name = self.object_name(key)
        response = await self._call(partial(self.client.get_object, Bucket=self.bucket, Key=name))
        body = response["Body"]
        try:
            while chunk := await self._call(partial(body.read, _CHUNK)):
                yield chunk
        finally:
            body.close()

    async def delete(self, key: str) -> None:
        try:
            name = self.object_name(key)
        except BlobNotFound:
            return
        # S3 answers 204 for a missing object too.
        await self._call(partial(self.client.delete_object, Bucket=self.bucket, Key=name))

    async def size(self, key: str) -> int:
        name = self.object_name(key)
        head = await self._call(partial(self.client.head_object, Bucket=self.bucket, Key=name))
        return head["ContentLength"]

    async def download_url(
        self, key: str, ttl_s: int, *, content_type: str, disposition: str
    ) -> str:
        params = {
            "Bucket": self.bucket,
            "Key": self.object_name(key),
            "ResponseContentType": content_type,
            "ResponseContentDisposition": disposition,
        }
        # Signing is local, but resolving credentials may reach the network (instance role).
        return await self._call(
            partial(
                self.client.generate_presigned_url, "get_object", Params=params, ExpiresIn=ttl_s
            )
        )

    async def _call(self, function: Callable[[], _T]) -> _T:
        try:
            return await anyio.to_thread.run_sync(function)
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                raise BlobNotFound(code) from None
            raise StorageError(f"s3 bucket {self.bucket}: {code or error}") from error
        except (BotoCoreError, Boto3Error) as error:
            raise StorageError(f"s3 bucket {self.bucket}: {error}") from error
