"""The apps bastion is measured against: same table, same SQLite file, same JSON."""

from __future__ import annotations
