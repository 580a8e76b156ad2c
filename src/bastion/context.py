"""The context every function receives: database session, caller, locale, logger, settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from bastion.auth.principal import Principal
from bastion.settings.sections import Settings


@dataclass(slots=True)
class JobInfo:
    """The job a context runs for (``ctx.job``), set only in job handlers.

    Attributes:
        id: The job's row id.
        queue: Its queue.
        attempt: This attempt's number, from 1.
        max_attempts: After that many failed attempts the job is dead.
    """

    id: int
    queue: str
    attempt: int
    max_attempts: int
    report: Callable[[Any], None] = field(repr=False, default=lambda _progress: None)

    def progress(self, value: Any) -> None:
        """Record progress (any JSON value); stored with the next lease extension."""
        self.report(value)


@dataclass(slots=True)
class Context:
    """Passed as the first argument to every query, mutation and action.

    Attributes:
        db: The transaction's session: read-only in queries, read-write in mutations,
            ``None`` in actions (which reach the database through queries and mutations).
        user: The authenticated caller, or ``None``.
        locale: The negotiated locale for messages (``en``, ``es``, ``tr``...).
        request_id: Correlates logs, errors and (later) jobs with the request.
        log: A structlog logger bound to the request id and the function name.
        settings: The validated settings.
        services: The runtime's services, for what a function needs beyond the database.
        session_data: The visitor's browser-session data (preferences, later the cart),
            or ``None`` without a session. Changes are saved when the response succeeds.
        job: In a job handler, which job and attempt this is; ``None`` elsewhere.
        idempotency_key: The request's ``Idempotency-Key`` in a function; in a workflow
            step, a key stable across the step's retries and resumptions. Pass it to peers
            (``Idempotency-Key``) so a repeat is harmless.
    """

    db: Session | None
    user: Principal | None
    locale: str
    request_id: str
    log: Any
    settings: Settings
    services: Any = None
    function: str = ""
    session_data: dict[str, Any] | None = None
    job: JobInfo | None = None
    idempotency_key: str | None = None

    @property
    def session(self) -> Session:
        """The database session; raises in actions, which hold no transaction."""
        if self.db is None:
            raise RuntimeError(
                f"{self.function or 'this function'} is an action and holds no database "
                "transaction: call a query or mutation from it instead"
            )
        return self.db

    def now(self) -> datetime:
        """The current time (UTC); frozen and shifted by the test kit's clock."""
        return datetime.now(UTC)
