"""Benchmarks of bastion against its peers; run by ``make bench``, never a CI gate."""

from __future__ import annotations
