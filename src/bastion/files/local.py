"""``LocalStorage``: blobs as files in one folder, written atomically."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

import anyio
import anyio.to_thread

from bastion.files.base import BlobNotFound, StorageError

_CHUNK = 64 * 1024
_KEY = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{32}$")
#: Temporary files of uploads in progress; a crash may leave some (safe to delete).
TEMP_DIR = ".incoming"


class LocalStorage:
    """Keeps each blob as ``<root>/<2 hex>/<32 hex>``.

    Keys are random (never derived from a user's file name) and checked against that
    shape before any path is built, so no key can escape ``root``. A blob is written to
    ``<root>/.incoming/`` and renamed into place once complete: readers never see half a
    file, and a failed upload removes its temporary file.

    Args:
        root: The folder; created on first save.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path_of(self, key: str) -> Path:
        """The file of a key; refuses keys this storage could not have made."""
        if not _KEY.fullmatch(key):
            raise BlobNotFound(key)
        return self.root / key

    async def save(self, stream: AsyncIterable[bytes]) -> str:
        key = f"{secrets.token_hex(1)}/{secrets.token_hex(16)}"
        final = self.root / key
        temp_dir = self.root / TEMP_DIR
        try:
            await anyio.to_thread.run_sync(_make_dirs, temp_dir, final.parent)
            temp = temp_dir / f"{secrets.token_hex(16)}.part"
            handle = await anyio.open_file(temp, "xb")
        except OSError as error:
            raise StorageError(f"cannot write to {self.root}: {error}") from error
        try:
            async with handle:
                async for chunk in stream:
                    await handle.write(chunk)
                await anyio.to_thread.run_sync(os.fsync, handle.wrapped.fileno())
            await anyio.to_thread.run_sync(os.replace, temp, final)
        except BaseException as error:
            await anyio.to_thread.run_sync(_unlink, temp)
            if isinstance(error, OSError):
                raise StorageError(f"cannot write to {self.root}: {error}") from error
            raise
        return key

    async def open(self, key: str) -> AsyncIterator[bytes]:
        path = self.path_of(key)
        try:
            handle = await anyio.open_file(path, "rb")
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        except OSError as error:
            raise StorageError(f"cannot read {key}: {error}") from error
        async with handle:
            while chunk := await handle.read(_CHUNK):
                yield chunk

    async def delete(self, key: str) -> None:
        try:
            path = self.path_of(key)
        except BlobNotFound:
            return
        try:
            await anyio.to_thread.run_sync(_unlink, path)
        except OSError as error:
            raise StorageError(f"cannot delete {key}: {error}") from error

    async def size(self, key: str) -> int:
        path = self.path_of(key)
        try:
            stat = await anyio.Path(path).stat()
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        return stat.st_size


def _make_dirs(*folders: Path) -> None:
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)
