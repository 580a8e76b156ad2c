"""The admin console at ``/console`` and the operations API under ``/admin``."""

from __future__ import annotations
