"""Full-text search: a declarative index over a table's text fields, with per-field
weights and typo tolerance, on SQLite (FTS5) and PostgreSQL (tsvector + pg_trgm)."""

from __future__ import annotations

from bastion.search.base import WEIGHTS, Hit, SearchBackend, Weight
from bastion.search.index import Progress, SearchIndex

__all__ = ["WEIGHTS", "Hit", "Progress", "SearchBackend", "SearchIndex", "Weight"]
