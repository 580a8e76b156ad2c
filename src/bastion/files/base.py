"""The storage seam: where uploaded bytes live, behind a small async Protocol.

A backend stores opaque blobs under keys it chooses itself; it never sees a user's
file name, so no upload can name a path. ``LocalStorage`` (``local.py``) is the
default; an S3-compatible backend fits the same four methods (``save`` as a multipart
upload, ``open`` as a streamed ``GetObject``).
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
