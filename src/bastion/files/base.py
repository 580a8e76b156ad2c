"""The storage seam: where uploaded bytes live, behind a small async Protocol.

A backend stores opaque blobs under keys it chooses itself; it never sees a user's
file name, so no upload can name a path. ``LocalStorage`` (``local.py``) is the
default; ``S3Storage`` (``s3.py``) keeps blobs in an S3-compatible bucket and also
implements :class:`DirectDownloads`, so clients fetch bytes from the bucket itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Protocol, runtime_checkable


class StorageError(Exception):
    """The backend could not store, read or delete a blob (disk full, no permission...)."""


class BlobNotFound(StorageError):
    """No blob has this key."""


@runtime_checkable
class Storage(Protocol):
    """Keeps blobs under keys of its own choosing.

    Example::

        key = await storage.save(chunks)
        async for chunk in storage.open(key):
            ...
        await storage.delete(key)
    """

    async def save(self, stream: AsyncIterable[bytes]) -> str:
        """Store every chunk of ``stream`` as one blob and return its new key.

        The blob becomes visible only once the stream is exhausted: when the stream
        raises (a size limit, say), nothing is left behind and the error propagates.

        Raises:
            StorageError: The backend failed.
        """
        ...

    def open(self, key: str) -> AsyncIterator[bytes]:
        """The blob's bytes, in chunks.

        Raises:
            BlobNotFound: No blob has this key (on the first iteration).
        """
        ...

    async def delete(self, key: str) -> None:
        """Remove the blob; a missing key is not an error."""
        ...

    async def size(self, key: str) -> int:
        """The blob's length in bytes.

        Raises:
            BlobNotFound: No blob has this key.
        """
        ...


@runtime_checkable
class DirectDownloads(Protocol):
    """A storage that clients download from directly, through a URL it signs itself.

    The file service asks for this URL only after a download passed its signature and
    access checks, so the storage's URL never replaces them.
    """

    async def download_url(
        self, key: str, ttl_s: int, *, content_type: str, disposition: str
    ) -> str:
        """A URL that serves the blob for ``ttl_s`` seconds with these response headers.

        Raises:
            StorageError: The backend failed.
        """
        ...
