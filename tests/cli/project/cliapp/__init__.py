"""A tiny app the CLI tests copy into a temporary folder and drive."""

from __future__ import annotations
