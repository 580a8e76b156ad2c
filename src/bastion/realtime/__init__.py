"""Realtime (#5): query subscriptions and channels over WebSocket or server-sent events,
fanned out across processes by the bus."""

from __future__ import annotations

from bastion.realtime.connection import Connection
from bastion.realtime.declarations import ChannelSpec, RealtimeDeclarations
from bastion.realtime.service import Realtime, send

__all__ = ["ChannelSpec", "Connection", "Realtime", "RealtimeDeclarations", "send"]
