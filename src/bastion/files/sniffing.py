"""Content types from magic bytes: what a file is, whatever its name or header says."""

from __future__ import annotations

#: How many leading bytes :func:`sniff_content_type` needs.
SNIFF_BYTES = 16

#: Types the sniffer recognizes.
KNOWN_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp", "application/pdf"})

#: Declared names that mean one of the known types.
_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-png": "image/png"}

_EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/gif": "gif",
    "image/webp": "webp",
    "application/pdf": "pdf",
}


def sniff_content_type(head: bytes) -> str | None:
    """The content type of a file starting with ``head``, or ``None`` when unknown.

    Only signatures that cannot begin a text document are used, so an HTML or SVG
    file (which a browser might run as script) is never taken for an image.
    """
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(head) >= 12 and head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    return None


def normalize_content_type(declared: str | None) -> str | None:
    """A declared ``Content-Type`` without parameters, lower-cased and de-aliased."""
    if not declared:
        return None
    bare = declared.split(";", 1)[0].strip().lower()
    return _ALIASES.get(bare, bare) or None


def extension_of(content_type: str) -> str:
    """The usual file extension of a known type (``bin`` otherwise)."""
    return _EXTENSIONS.get(content_type, "bin")
