"""Line charts as inline SVG, drawn on the server: no chart library, no script.

Colours come from the stylesheet (classes on the paths), because the console's
Content-Security-Policy forbids inline ``style`` attributes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from markupsafe import Markup, escape

WIDTH = 600
HEIGHT = 180
LEFT = 48
RIGHT = 8
TOP = 12
BOTTOM = 24


@dataclass(frozen=True, slots=True)
class Series:
    """One line: a value per minute (``None`` where there is nothing to show)."""

    name: str
    values: Sequence[float | None]
    tone: str = "primary"
    """The stylesheet's colour class: ``primary``, ``secondary`` or ``danger``."""


def line_chart(
    title: str, minutes: Sequence[datetime], series: Sequence[Series], *, unit: str = ""
) -> Markup:
    """An SVG chart of ``series`` over ``minutes`` (the x axis, oldest first).

    Each path carries ``data-points`` (how many minutes have a value), so a test can
    tell an empty chart from one drawn with data.
    """
    known = [v for line in series for v in line.values if v is not None]
    top = _nice_ceiling(max(known, default=0.0))
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    step = plot_w / max(len(minutes) - 1, 1)

    def y(value: float) -> float:
        return TOP + plot_h - (value / top) * plot_h

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for fraction in (0.0, 0.5, 1.0):
        level = y(top * fraction)
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" '
            f'y1="{level:.1f}" y2="{level:.1f}"/>'
        )
        parts.append(
            f'<text class="axis" x="{LEFT - 6}" y="{level + 4:.1f}" text-anchor="end">'
            f"{escape(_label(top * fraction, unit))}</text>"
        )
    if minutes:
        for index, anchor in ((0, "start"), (len(minutes) - 1, "end")):
            parts.append(
                f'<text class="axis" x="{LEFT + index * step:.1f}" y="{HEIGHT - 6}" '
                f'text-anchor="{anchor}">{minutes[index]:%H:%M}</text>'
            )
    for line in series:
        commands: list[str] = []
        dots: list[str] = []
        values = list(line.values)
        for index, value in enumerate(values):
            if value is None:
                continue
            x, level = LEFT + index * step, y(value)
            joined_before = index > 0 and values[index - 1] is not None
            joined_after = index + 1 < len(values) and values[index + 1] is not None
            commands.append(f"{'L' if joined_before else 'M'}{x:.1f},{level:.1f}")
            if not (joined_before or joined_after):
                # A minute alone between gaps: a line of one point draws nothing.
                dots.append(
                    f'<circle class="dot tone-{escape(line.tone)}" cx="{x:.1f}" '
                    f'cy="{level:.1f}" r="3"/>'
                )
        points = sum(value is not None for value in line.values)
        parts.append(
            f'<path class="line tone-{escape(line.tone)}" data-series="{escape(line.name)}" '
            f'data-points="{points}" d="{" ".join(commands)}"/>'
        )
        parts.extend(dots)
    parts.append("</svg>")
    return Markup("".join(parts))


def legend(series: Sequence[Series]) -> Markup:
    """The names of ``series`` next to their colours."""
    items = "".join(
        f'<li><span class="swatch tone-{escape(line.tone)}"></span>{escape(line.name)}</li>'
        for line in series
    )
    return Markup(f'<ul class="legend">{items}</ul>')


def _nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value`` (1 for 0)."""
    if value <= 0:
        return 1.0
    magnitude = 1.0
    while magnitude * 10 <= value:
        magnitude *= 10
    while magnitude > value:
        magnitude /= 10
    for factor in (1, 2, 5, 10):
        if magnitude * factor >= value:
            return magnitude * factor
    return magnitude * 10


def _label(value: float, unit: str) -> str:
    text = f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.2g}"
    return f"{text}{unit}"
