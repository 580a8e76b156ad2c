"""``FileService`` (``runtime.files``): upload, sign, serve and delete files."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import anyio.to_thread
import structlog

from bastion.auth.audit import audit
from bastion.auth.principal import Principal
from bastion.db.database import Database
from bastion.errors import (
    FieldError,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
    ServiceUnavailable,
    ValidationFailed,
)
from bastion.files.base import BlobNotFound, DirectDownloads, Storage, StorageError
from bastion.files.local import LocalStorage
from bastion.files.records import ACCESS_LEVELS, Access, FileRecord
from bastion.files.signed_urls import UrlSigner
from bastion.files.sniffing import extension_of
from bastion.files.uploads import MultipartFile, UploadLimits
from bastion.settings.sections import FilesSection, Settings

_log = structlog.get_logger("bastion.files")

#: Where downloads are served; signed URLs point here.
DOWNLOAD_PREFIX = "/files"


class _Request(Protocol):
    """What :meth:`FileService.upload` needs of a Starlette ``Request``."""

    @property
    def headers(self) -> Any: ...

    def stream(self) -> AsyncIterator[bytes]: ...


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A file as stored: its row's facts."""

    id: str
    content_type: str
    size: int
    sha256: str
    owner_id: str | None
    access: str
    storage_key: str

    @classmethod
    def of(cls, row: FileRecord) -> StoredFile:
        return cls(
            row.id,
            row.content_type,
            row.size,
            row.sha256,
            row.owner_id,
            row.access,
            row.storage_key,
        )

    @property
    def disposition(self) -> str:
        """Its ``Content-Disposition``: images inline, anything else as an attachment,
        named after the id (a user's file name is never echoed back)."""
        kind = "inline" if self.content_type.startswith("image/") else "attachment"
        return f'{kind}; filename="{self.id}.{extension_of(self.content_type)}"'


@dataclass(frozen=True, slots=True)
class Download:
    """A verified download: the file, its bytes and how long the URL has left."""

    file: StoredFile
    chunks: AsyncIterator[bytes]
    remaining_s: int


@dataclass(frozen=True, slots=True)
class Redirect:
    """A verified download that a :class:`DirectDownloads` storage serves itself, at
    ``location`` (valid no longer than the URL that was checked)."""

    file: StoredFile
    location: str


def storage_from_settings(settings: FilesSection) -> Storage:
    """The backend ``files.backend`` names."""
    if settings.backend == "s3":
        try:
            # Imported here: boto3 is an optional extra, needed by this backend only.
            from bastion.files.s3 import S3Storage
        except ImportError as error:
            raise RuntimeError(
                "files.backend = 's3' needs boto3: pip install 'bastion[s3]'"
            ) from error
        return S3Storage(settings)
    return LocalStorage(settings.root)


class FileService:
    """Files for an app: streamed uploads into a :class:`Storage`, rows in ``bastion_files``,
    signed expiring URLs, access checks and an audit entry per non-public download.

    Args:
        database: Where the rows go.
        settings: ``files`` and ``app.secret_key`` are used.
        storage: The backend; by default the one ``files.backend`` names.
        admin_permission: What makes a caller an admin for ``owner``/``admin`` files.
    """

    def __init__(
        self,
        database: Database,
        settings: Settings,
        *,
        storage: Storage | None = None,
        admin_permission: str = "write:all",
    ) -> None:
        self.database = database
        self.settings = settings.files
        self.storage: Storage = storage or storage_from_settings(settings.files)
        self.admin_permission = admin_permission
        self.signer = UrlSigner(settings.app.secret_key.get_secret_value())

    async def upload(
        self,
        source: _Request | AsyncIterable[bytes],
        *,
        owner: str | None,
        access: Access = "owner",
        allowed_types: Iterable[str] | None = None,
        max_bytes: int | None = None,
        content_type: str | None = None,
        field: str = "file",
    ) -> StoredFile:
        """Store an upload and record it; returns the stored file.

        Args:
            source: A request with a ``multipart/form-data`` body (its part ``field`` is
                the file), or the raw bytes as an async iterable.
            owner: The owning user's id.
            access: Who may download it (see :class:`~bastion.files.FileRecord`).
            allowed_types: Sniffed types accepted; default ``files.allowed_types``.
            max_bytes: The size limit; default ``files.max_bytes``.
            content_type: The declared type of a raw ``source`` (checked, not trusted).

        Raises:
            PayloadTooLarge: (413) the file is larger than the limit.
            UnsupportedMediaType: (415) its bytes are not an allowed type, or its
                declared type names another one, or the body is not multipart.
            ServiceUnavailable: (503) the storage failed; no row is written.
        """
        if access not in ACCESS_LEVELS:
            raise ValidationFailed(errors=[FieldError("access", "literal_error")])
        limits = UploadLimits(
            max_bytes=max_bytes or self.settings.max_bytes,
            allowed_types=frozenset(
                self.settings.allowed_types if allowed_types is None else allowed_types
            ),
        )
        if isinstance(source, AsyncIterable):
            declared: str | None = content_type
            checked = limits.check(source, lambda: declared)
        else:
            part = MultipartFile(
                source.headers.get("content-type", ""), source.stream(), field_name=field
            )
            checked = limits.check(part.chunks(), lambda: part.declared_type)
        try:
            key = await self.storage.save(checked)
        except StorageError as error:
            _log.error("file_storage_failed", error=str(error))
            raise ServiceUnavailable() from error
        row = FileRecord(
            id=secrets.token_urlsafe(16),
            storage_key=key,
            content_type=limits.content_type,
            size=limits.size,
            sha256=limits.sha256,
            owner_id=owner,
            access=access,
        )
        try:
            stored = await anyio.to_thread.run_sync(self._insert, row)
        except BaseException:
            # The row is the file's only reference: without it the blob is garbage.
            with anyio.CancelScope(shield=True):
                await self.storage.delete(key)
            raise
        return stored

    def _insert(self, row: FileRecord) -> StoredFile:
        with self.database.transaction() as session:
            session.add(row)
            session.flush()
            return StoredFile.of(row)

    def url(self, file_id: str, ttl_s: int | None = None) -> str:
        """A signed download URL, ``/files/{id}?expires=...&sig=...``, valid ``ttl_s``
        seconds (default ``files.url_ttl_s``)."""
        return self.signed(file_id, ttl_s)[0]

    def signed(self, file_id: str, ttl_s: int | None = None) -> tuple[str, int]:
        """The signed URL and its expiry as unix seconds."""
        return self.signer.url(DOWNLOAD_PREFIX, file_id, ttl_s or self.settings.url_ttl_s)

    async def get(self, file_id: str) -> StoredFile | None:
        """The stored file, or ``None``."""
        return await anyio.to_thread.run_sync(self._get, file_id)

    def _get(self, file_id: str) -> StoredFile | None:
        with self.database.read_transaction() as session:
            row = session.get(FileRecord, file_id)
            return None if row is None else StoredFile.of(row)

    async def download(
        self,
        file_id: str,
        *,
        expires: str | None,
        sig: str | None,
        user: Principal | None,
        request_id: str | None = None,
    ) -> Download | Redirect:
        """Check a signed URL and the file's access policy; audit; open the bytes, or
        for a :class:`DirectDownloads` storage sign its URL, valid no longer than this one.

        Raises:
            InvalidSignature: (403) a missing or wrong signature.
            BastionError: (403 ``url_expired``) a genuine but expired URL.
            NotFound: (404) no such file.
            NotAuthenticated: (401) an ``owner``/``admin`` file, anonymous caller.
            PermissionDenied: (403) an ``owner``/``admin`` file, another user.
        """
        remaining = self.signer.verify(file_id, expires, sig)
        file = await anyio.to_thread.run_sync(self._authorize, file_id, user, request_id)
        try:
            # Checked before any byte is sent: a missing blob is a 404, not a cut response.
            await self.storage.size(file.storage_key)
            if isinstance(self.storage, DirectDownloads):
                location = await self.storage.download_url(
                    file.storage_key,
                    min(remaining, self.settings.url_ttl_s),
                    content_type=file.content_type,
                    disposition=file.disposition,
                )
                return Redirect(file, location)
        except BlobNotFound:
            _log.error("file_blob_missing", file_id=file_id)
            raise NotFound() from None
        except StorageError as error:
            _log.error("file_storage_failed", error=str(error))
            raise ServiceUnavailable() from error
        return Download(file, self.storage.open(file.storage_key), remaining)

    def _authorize(
        self, file_id: str, user: Principal | None, request_id: str | None
    ) -> StoredFile:
        with self.database.transaction() as session:
            row = session.get(FileRecord, file_id)
            if row is None:
                raise NotFound()
            if row.access in ("owner", "admin"):
                if user is None:
                    raise NotAuthenticated()
                is_admin = user.allows(self.admin_permission)
                if not (is_admin or (row.access == "owner" and user.id == row.owner_id)):
                    raise PermissionDenied()
            if row.access != "public":
                audit(
                    session,
                    actor_id=user.id if user else None,
                    action="file.download",
                    target_type="file",
                    target_id=row.id,
                    request_id=request_id,
                    access=row.access,
                )
            return StoredFile.of(row)

    async def delete(self, file_id: str, *, user: Principal | None = None) -> bool:
        """Delete a file's row, then its blob; ``False`` when there was none.

        With ``user``, only the owner or an admin may (403 otherwise).
        """
        key = await anyio.to_thread.run_sync(self._delete_row, file_id, user)
        if key is None:
            return False
        try:
            await self.storage.delete(key)
        except StorageError as error:
            # The row is gone, so the blob is unreachable; a sweep may remove it later.
            _log.warning("file_blob_not_deleted", file_id=file_id, error=str(error))
        return True

    def _delete_row(self, file_id: str, user: Principal | None) -> str | None:
        with self.database.transaction() as session:
            row = session.get(FileRecord, file_id)
            if row is None:
                return None
            if user is not None and not (
                user.id == row.owner_id or user.allows(self.admin_permission)
            ):
                raise PermissionDenied()
            key = row.storage_key
            session.delete(row)
            return key
