"""A controllable clock for tests, on top of time-machine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any


class Clock:
    """The frozen current time; :meth:`shift` moves it, :meth:`set` jumps it.

    ``datetime.now()``, ``time.time()`` and ``ctx.now()`` all follow it; monotonic
    clocks (timeouts, event loops) are left alone.
    """

    def __init__(self, traveller: Any) -> None:
        self._traveller = traveller

    def now(self) -> datetime:
        return datetime.now(UTC)

    def shift(self, seconds: float = 0, **delta: float) -> datetime:
        """Move time forward by ``seconds`` (or ``timedelta`` keywords: ``minutes=5``)."""
        self._traveller.shift(timedelta(seconds=seconds, **delta))
        return self.now()

    def set(self, moment: datetime) -> datetime:
        self._traveller.move_to(moment)
        return self.now()
