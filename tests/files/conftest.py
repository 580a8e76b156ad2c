"""Fixtures for file tests: an app with ``use_files()`` storing under the test's tmp dir."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from bastion import App

app = App("filetests")
app.use_files()


@pytest.fixture
def bastion_app() -> App:
    return app


@pytest.fixture
def files_root(tmp_path: Path) -> Path:
    return tmp_path / "files"


@pytest.fixture
def bastion_settings_overrides(files_root: Path) -> dict[str, Any]:
    return {"files": {"root": str(files_root), "max_bytes": 64 * 1024}}


def png(width: int = 1, height: int = 1, *, noise: int = 0) -> bytes:
    """A valid PNG built by hand (8-bit greyscale); ``noise`` pads it with random-ish rows."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00" + bytes((x * 7 + y * 13) % 256 for x in range(width)) for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    image = zlib.compress(rows, level=0) + bytes(noise)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", image) + chunk(b"IEND", b"")
    )


#: A baseline JFIF JPEG skeleton: SOI, APP0 (JFIF), a comment, EOI.
JPEG = (
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    + b"\xff\xfe\x00\x0ebastion test"
    + b"\xff\xd9"
)
