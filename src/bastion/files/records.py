"""The ``bastion_files`` table: one row per stored upload."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from bastion.db.tables import PlatformBase, utcnow
from bastion.db.types import UTCDateTime

#: Who may download a file through a valid signed URL.
Access = Literal["public", "signed", "owner", "admin"]
ACCESS_LEVELS: tuple[Access, ...] = ("public", "signed", "owner", "admin")


class FileRecord(PlatformBase):
    """An uploaded file: where its bytes are, what they are, who owns them.

    ``access`` applies on top of the URL's signature:

    - ``public``: anyone with a valid URL; downloads are not audited, cacheable publicly;
    - ``signed``: the URL is the capability: anyone with a valid URL, audited;
    - ``owner``: the owner or an admin, signed in, with a valid URL; audited;
    - ``admin``: an admin, signed in, with a valid URL; audited.
    """

    __tablename__ = "bastion_files"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    storage_key: Mapped[str] = mapped_column(String(255), unique=True)
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    owner_id: Mapped[str | None] = mapped_column(String(64), index=True)
    access: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
