"""The bastion apps the benchmarks serve."""

from __future__ import annotations
