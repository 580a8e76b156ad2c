"""What an app offers realtime clients: named channels and subscribable queries."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """A channel clients subscribe to by name.

    Attributes:
        per_user: Each user hears only the events sent to them (a cart, notifications);
            otherwise every subscriber hears every event (announcements).
        permissions: Every one is required to subscribe.
    """

    name: str
    per_user: bool = True
    permissions: frozenset[str] = frozenset()


@dataclass(slots=True)
class RealtimeDeclarations:
    channels: dict[str, ChannelSpec] = field(default_factory=dict)
    queries: dict[str, str] = field(default_factory=dict)
    """Subscription name → the declared query's function name."""

    def add_channel(self, name: str, *, per_user: bool, permissions: Iterable[str]) -> None:
        if not name or len(name) > 100:
            raise ValueError("a channel name is 1 to 100 characters")
        if name in self.channels:
            raise ValueError(f"channel {name!r} is already declared")
        self.channels[name] = ChannelSpec(name, per_user, frozenset(permissions))

    def add_query(self, name: str, function: str) -> None:
        if name in self.queries:
            raise ValueError(f"a live query named {name!r} is already declared")
        self.queries[name] = function
