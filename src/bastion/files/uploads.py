"""Reading an upload as it streams in: the multipart file part, its size and its type.

Nothing here holds a whole file: :func:`multipart_file` hands the file part's bytes on
as they arrive, and :class:`UploadLimits` counts them, sniffs the first bytes and
stops the stream at the limit.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from bastion.errors import (
    BadRequest,
    FieldError,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)
from bastion.files.sniffing import SNIFF_BYTES, normalize_content_type, sniff_content_type

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

#: The OpenAPI request body of an upload route reading the multipart field ``file``
#: (``openapi_extra={"requestBody": UPLOAD_REQUEST_BODY}``): such routes read the stream
#: themselves, so FastAPI cannot describe the body.
UPLOAD_REQUEST_BODY: dict[str, object] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary"}},
            }
        }
    },
}


#: Declared types that say nothing about the content; the sniffed type stands alone.
_UNINFORMATIVE = frozenset({"application/octet-stream", "binary/octet-stream"})
#: Bytes of non-file fields and part headers read before the request is refused.
_MAX_OTHER_BYTES = 64 * 1024


@dataclass
class UploadLimits:
    """What an upload may be: at most ``max_bytes``, one of ``allowed_types``.

    The type comes from the file's first bytes. A declared type (the part's
    ``Content-Type``) is not trusted: it must be absent, ``application/octet-stream``
    or the same as the sniffed type, else 415.
    """

    max_bytes: int
    allowed_types: frozenset[str]
    size: int = 0
    content_type: str = ""
    _sha256: hashlib._Hash = field(default_factory=hashlib.sha256, repr=False)

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()

    async def check(
        self, chunks: AsyncIterable[bytes], declared_type: Callable[[], str | None] | None = None
    ) -> AsyncIterator[bytes]:
        """The checked stream: raises 415 before the first chunk when the type is wrong
        and 413 as soon as the byte count passes the limit.

        ``declared_type`` is asked once the first bytes have arrived (a multipart
        part's headers come just before them).
        """
        iterator = aiter(chunks)
        head = b""
        async for chunk in iterator:
            head += chunk
            if len(head) >= SNIFF_BYTES:
                break
        self.content_type = self._accept(head, declared_type() if declared_type else None)
        yield self._count(head)
        async for chunk in iterator:
            yield self._count(chunk)

    def _accept(self, head: bytes, declared_type: str | None) -> str:
        sniffed = sniff_content_type(head)
        if sniffed is None or sniffed not in self.allowed_types:
            raise UnsupportedMediaType()
        declared = normalize_content_type(declared_type)
        if declared is not None and declared not in _UNINFORMATIVE and declared != sniffed:
            raise UnsupportedMediaType()
        return sniffed

    def _count(self, chunk: bytes) -> bytes:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise PayloadTooLarge(limit=self.max_bytes)
        self._sha256.update(chunk)
        return chunk


@dataclass
class _Part:
    name: str | None = None
    is_file: bool = False
    content_type: str | None = None
    header_name: bytes = b""
    header_value: bytes = b""
    disposition: bytes = b""


@dataclass
class MultipartFile:
    """The file part of a ``multipart/form-data`` body, read lazily.

    ``declared_type`` is known once :meth:`start` returns; :attr:`chunks` yields the
    part's bytes as the request streams in.
    """

    content_type_header: str
    body: AsyncIterable[bytes]
    field_name: str = "file"
    declared_type: str | None = None
    _pending: list[bytes] = field(default_factory=list)
    _part: _Part = field(default_factory=_Part)
    _found: bool = False
    _done: bool = False
    _other_bytes: int = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        """The file part's bytes; 422 when the body has no part named ``field_name``."""
        mime, options = parse_options_header(self.content_type_header)
        boundary = options.get(b"boundary")
        if mime != b"multipart/form-data" or not boundary:
            raise UnsupportedMediaType()
        callbacks: MultipartCallbacks = {
            "on_part_begin": self._begin,
            "on_part_data": self._data,
            "on_part_end": self._end,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
        }
        parser = MultipartParser(boundary, callbacks)
        try:
            async for chunk in self.body:
                parser.write(chunk)
                pending, self._pending = self._pending, []
                for data in pending:
                    yield data
                if self._done:
                    # The file is complete; whatever follows is never read.
                    return
            parser.finalize()
        except FormParserError:
            raise BadRequest(detail="The multipart body is malformed.") from None
        for data in self._pending:
            yield data
        if not self._found:
            raise ValidationFailed(errors=[FieldError(self.field_name, "missing")])

    def _begin(self) -> None:
        self._part = _Part()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._limit_other(end - start)
        self._part.header_name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._limit_other(end - start)
        self._part.header_value += data[start:end]

    def _header_end(self) -> None:
        name = self._part.header_name.lower()
        if name == b"content-disposition":
            self._part.disposition = self._part.header_value
        elif name == b"content-type":
            self._part.content_type = self._part.header_value.decode("latin-1")
        self._part.header_name = b""
        self._part.header_value = b""

    def _headers_finished(self) -> None:
        _disposition, options = parse_options_header(self._part.disposition)
        name = options.get(b"name")
        self._part.name = name.decode("utf-8", "replace") if name is not None else None
        self._part.is_file = (
            self._part.name == self.field_name and not self._found and b"filename" in options
        )
        if self._part.is_file:
            self._found = True
            self.declared_type = self._part.content_type

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._part.is_file:
            self._pending.append(data[start:end])
        else:
            self._limit_other(end - start)

    def _end(self) -> None:
        if self._part.is_file:
            self._done = True

    def _limit_other(self, length: int) -> None:
        self._other_bytes += length
        if self._other_bytes > _MAX_OTHER_BYTES:
            raise PayloadTooLarge(limit=_MAX_OTHER_BYTES)
