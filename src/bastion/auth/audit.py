"""The audit log: who did what to whom, why, and under which request.

Written in the same transaction as the change it records, so an audited action
and its record commit or roll back together.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String, Text
from sqlalchemy.orm import Mapped, Session, mapped_column

from bastion.db.tables import PlatformBase, utcnow
from bastion.db.types import UTCDateTime
from bastion.errors import FieldError, ValidationFailed

MIN_REASON_LENGTH = 3


class AuditEntry(PlatformBase):
    __tablename__ = "bastion_audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor_id: Mapped[str | None] = mapped_column(String(64), index=True)
    action: Mapped[str] = mapped_column(String(100), index=True)
    target_type: Mapped[str] = mapped_column(String(50))
    target_id: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


def require_reason(reason: str | None, *, field: str = "reason") -> str:
    """An admin action's reason, stripped; 422 ``reason_required`` when shorter than 3."""
    text = (reason or "").strip()
    if len(text) < MIN_REASON_LENGTH:
        raise ValidationFailed(
            errors=[FieldError(field, "reason_required", params={"min": MIN_REASON_LENGTH})]
        )
    return text


def audit(
    session: Session,
    *,
    actor_id: str | None,
    action: str,
    target_type: str,
    target_id: str | int,
    reason: str | None = None,
    request_id: str | None = None,
    **data: Any,
) -> AuditEntry:
    """Record an action in the caller's transaction."""
    entry = AuditEntry(
        actor_id=actor_id,
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        reason=reason,
        request_id=request_id or None,
        data=data,
    )
    session.add(entry)
    return entry
