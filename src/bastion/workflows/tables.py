"""Workflow runs and their step checkpoints, in the app's own database (decision 0006)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bastion.db.tables import PlatformBase, utcnow
from bastion.db.types import UTCDateTime


class WorkflowRow(PlatformBase):
    """One workflow run. Its id is chosen by the caller (or derived from one), so it
    doubles as an idempotency key: starting the same id twice starts it once."""

    __tablename__ = "bastion_workflows"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    status: Mapped[str] = mapped_column(String(24), index=True)
    args: Mapped[dict[str, Any]] = mapped_column(JSON)
    result: Mapped[Any] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(64))
    owner: Mapped[str | None] = mapped_column(String(64), index=True)
    parent_id: Mapped[str | None] = mapped_column(String(200))
    request_id: Mapped[str | None] = mapped_column(String(128))
    #: W3C ``traceparent`` of the span that started the run (its steps join that trace).
    trace_context: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class StepRow(PlatformBase):
    """A completed step's checkpoint (or a compensation's). ``(workflow_id, position)``
    is unique, so a step's checkpoint is written at most once whoever runs it."""

    __tablename__ = "bastion_workflow_steps"

    workflow_id: Mapped[str] = mapped_column(
        ForeignKey("bastion_workflows.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    output: Mapped[Any] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    wake_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_bastion_workflow_steps_status", "workflow_id", "status"),)
