"""The apps of ``benchmarks/jobs_throughput.py``: one no-op job per system, and the
``stamp`` job that records when it started (for enqueue→start latency)."""

from __future__ import annotations
