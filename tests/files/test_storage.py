"""``LocalStorage`` and the sniffer, without a database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bastion.files import BlobNotFound, LocalStorage, Storage, StorageError, sniff_content_type
from bastion.files.signed_urls import UrlSigner
from tests.files.conftest import JPEG, png


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def files_under(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()]


async def test_a_saved_blob_reads_back_and_deletes(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    assert isinstance(storage, Storage)
    key = await storage.save(chunks(b"abc", b"def"))
    assert await storage.size(key) == 6
    assert b"".join([part async for part in storage.open(key)]) == b"abcdef"
    await storage.delete(key)
    await storage.delete(key)
    with pytest.raises(BlobNotFound):
        await storage.size(key)
    with pytest.raises(BlobNotFound):
        [part async for part in storage.open(key)]


async def test_a_failing_stream_leaves_no_file(tmp_path: Path) -> None:
    async def failing() -> AsyncIterator[bytes]:
        yield b"partial"
        raise RuntimeError("client went away")

    storage = LocalStorage(tmp_path)
    with pytest.raises(RuntimeError):
        await storage.save(failing())
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("key", ["../etc/passwd", "/etc/passwd", "ab/../../x", "ab/cd", ""])
async def test_keys_it_could_not_have_made_never_reach_the_disk(tmp_path: Path, key: str) -> None:
    storage = LocalStorage(tmp_path / "root")
    with pytest.raises(BlobNotFound):
        storage.path_of(key)
    await storage.delete(key)


async def test_an_unwritable_root_is_a_storage_error(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_bytes(b"")
    with pytest.raises(StorageError):
        await LocalStorage(blocked / "files").save(chunks(b"x"))


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (png(), "image/png"),
        (JPEG, "image/jpeg"),
        (b"GIF89a\x01\x00\x01\x00", "image/gif"),
        (b"GIF87a\x01\x00\x01\x00", "image/gif"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", None),
        (b"%PDF-1.4\n", "application/pdf"),
        (b"<html>", None),
        (b"\xef\xbb\xbf<svg/>", None),
        (b"", None),
    ],
)
def test_sniffing(head: bytes, expected: str | None) -> None:
    assert sniff_content_type(head[:16]) == expected


def test_signatures_depend_on_the_secret_and_purpose() -> None:
    one, other = UrlSigner("secret-one"), UrlSigner("secret-two")
    assert one.sign("f1", 100) == UrlSigner("secret-one").sign("f1", 100)
    assert one.sign("f1", 100) != other.sign("f1", 100)
    assert one.sign("f1", 100) != one.sign("f1", 101)
    assert one.sign("f1", 100) != one.sign("f2", 100)
