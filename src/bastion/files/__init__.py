"""Files: streamed uploads checked by size and magic bytes, pluggable storage, signed
expiring download URLs, per-file access policy and an access audit.

``app.use_files()`` mounts ``POST {api_prefix}/files`` and ``GET /files/{id}``;
``runtime.files`` is the :class:`FileService`. ``files.backend`` picks the storage:
:class:`LocalStorage` or ``bastion.files.s3.S3Storage`` (the ``bastion[s3]`` extra).
"""

from __future__ import annotations

from bastion.files.base import BlobNotFound, DirectDownloads, Storage, StorageError
from bastion.files.local import LocalStorage
from bastion.files.records import ACCESS_LEVELS, Access, FileRecord
from bastion.files.service import (
    DOWNLOAD_PREFIX,
    Download,
    FileService,
    Redirect,
    StoredFile,
    storage_from_settings,
)
from bastion.files.signed_urls import UrlSigner
from bastion.files.sniffing import KNOWN_TYPES, sniff_content_type
from bastion.files.uploads import UPLOAD_REQUEST_BODY, MultipartFile, UploadLimits

__all__ = [
    "ACCESS_LEVELS",
    "DOWNLOAD_PREFIX",
    "KNOWN_TYPES",
    "UPLOAD_REQUEST_BODY",
    "Access",
    "BlobNotFound",
    "DirectDownloads",
    "Download",
    "FileRecord",
    "FileService",
    "LocalStorage",
    "MultipartFile",
    "Redirect",
    "Storage",
    "StorageError",
    "StoredFile",
    "UploadLimits",
    "UrlSigner",
    "sniff_content_type",
    "storage_from_settings",
]
