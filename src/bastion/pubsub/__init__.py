"""Messages between an app's processes (#5): Redis pub/sub, PostgreSQL LISTEN/NOTIFY, or
in-process only. See :mod:`bastion.pubsub.bus`."""

from __future__ import annotations

import re

from sqlalchemy.engine import make_url

from bastion.pubsub.bus import Bus, Handler, Message, MessageTooLarge, PostgresBus, RedisBus
from bastion.settings import Settings

__all__ = [
    "Bus",
    "Handler",
    "Message",
    "MessageTooLarge",
    "PostgresBus",
    "RedisBus",
    "make_bus",
]


def make_bus(settings: Settings, app_name: str) -> Bus:
    """The bus ``[pubsub]`` asks for (``auto``: Redis, else PostgreSQL, else memory)."""
    config = settings.pubsub
    channel = config.channel or "bastion_" + re.sub(r"[^a-z0-9_]", "_", app_name.lower())[:50]
    url = make_url(settings.database.url)
    on_postgres = url.get_backend_name() == "postgresql"
    backend = config.backend
    if backend == "auto":
        backend = "redis" if settings.redis.url else "postgres" if on_postgres else "memory"
    if backend == "redis":
        if not settings.redis.url:
            raise ValueError("[pubsub] backend = 'redis' needs [redis] url")
        return RedisBus(settings.redis.url, channel, reconnect_max_s=config.reconnect_max_s)
    if backend == "postgres":
        if not on_postgres:
            raise ValueError("[pubsub] backend = 'postgres' needs a PostgreSQL database")
        # psycopg takes the libpq URL, without SQLAlchemy's "+driver".
        plain = url.set(drivername="postgresql").render_as_string(hide_password=False)
        return PostgresBus(plain, channel, reconnect_max_s=config.reconnect_max_s)
    return Bus(channel, reconnect_max_s=config.reconnect_max_s)
