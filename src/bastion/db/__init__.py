"""Data layer: engines, sessions, platform tables, pagination, migrations."""

from __future__ import annotations

from bastion.db.database import Database, ReadOnlySession
from bastion.db.pagination import (
    CursorCodec,
    CursorPage,
    CursorPagination,
    OffsetPage,
    OffsetPagination,
    PageResult,
    SortKey,
    listing_scope,
    paginate_cursor,
    paginate_offset,
)
from bastion.db.tables import NAMING_CONVENTION, ErrorLogEntry, MetaEntry, platform_metadata
from bastion.db.types import UTCDateTime

__all__ = [
    "NAMING_CONVENTION",
    "CursorCodec",
    "CursorPage",
    "CursorPagination",
    "Database",
    "ErrorLogEntry",
    "MetaEntry",
    "OffsetPage",
    "OffsetPagination",
    "PageResult",
    "ReadOnlySession",
    "SortKey",
    "UTCDateTime",
    "listing_scope",
    "paginate_cursor",
    "paginate_offset",
    "platform_metadata",
]
