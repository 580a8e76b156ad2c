"""The console's server-drawn SVG charts."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from bastion.console.charts import Series, legend, line_chart

MINUTES = [datetime(2030, 1, 1, 12, 0, tzinfo=UTC) + timedelta(minutes=i) for i in range(5)]


def test_a_series_is_one_path_with_a_point_per_minute_that_has_a_value() -> None:
    svg = line_chart("Requests", MINUTES, [Series("requests", [0, 10, 20, 5, 0])])
    path = re.search(r'data-series="requests" data-points="(\d+)" d="([^"]*)"', svg)
    assert path is not None
    assert path.group(1) == "5"
    assert path.group(2).startswith("M")
    assert path.group(2).count("L") == 4
    # The y axis ends at a round number above the largest value.
    assert ">20<" in svg
    assert "12:00" in svg
    assert "12:04" in svg


def test_gaps_break_the_line_and_lone_minutes_become_dots() -> None:
    svg = line_chart("Latency", MINUTES, [Series("p95", [1.0, 2.0, None, 3.0, None])], unit=" ms")
    path = re.search(r'data-series="p95" data-points="(\d+)" d="([^"]*)"', svg)
    assert path is not None
    assert path.group(1) == "3"
    assert path.group(2).count("M") == 2
    assert svg.count("<circle") == 1
    assert "5 ms" in svg


def test_an_empty_chart_draws_no_line() -> None:
    svg = line_chart("Errors", MINUTES, [Series("5xx", [None] * 5, tone="danger")], unit="%")
    assert 'data-points="0" d=""' in svg
    assert ">1%<" in svg


def test_titles_and_names_are_escaped() -> None:
    series = [Series("<b>", [1, 2, 3, 4, 5])]
    svg = line_chart("<script>", MINUTES, series)
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    assert "&lt;b&gt;" in legend(series)
