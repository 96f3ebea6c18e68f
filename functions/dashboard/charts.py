"""Small inline SVG line charts for the dashboard's trends. Pure.

A chart is built from numbers and labels only; every label is escaped here (the SVG is put into the
page as markup), and styling is by presentation attributes and classes, never by `style=` attributes,
so the page's Content-Security-Policy needs no inline-style exception. A missing value (None) leaves
a gap in the line; no values, or all zero, draw a flat chart and never divide by zero.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

WIDTH, HEIGHT = 360, 150
LEFT, RIGHT, TOP, BOTTOM = 40, 22, 14, 26
COLOURS = ("#0969da", "#8250df", "#bf8700", "#1a7f37", "#cf222e")


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]


def _h(text: object) -> str:
    return html.escape(str(text), quote=True)


def _nice_top(value: float) -> float:
    """A round upper bound at or above `value` (1, 2, 2.5, 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    power = 1.0
    while power * 10 <= value:
        power *= 10
    while power > value:
        power /= 10
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def _label(value: float, unit: str) -> str:
    text = f"{value:.1f}".rstrip("0").rstrip(".") if value % 1 else f"{value:.0f}"
    return f"{text}{unit}"


def line_chart(title: str, labels: Sequence[str], series: Sequence[Series], unit: str = "") -> str:
    """An SVG line chart of `series` over `labels` (one point per label), with a y axis from 0."""
    count = max((len(labels), *(len(s.values) for s in series)), default=0)
    numbers = [v for s in series for v in s.values if isinstance(v, int | float)]
    top = _nice_top(max(numbers, default=0.0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(index: int) -> float:
        return LEFT + (plot_w * index / (count - 1) if count > 1 else plot_w / 2)

    def y(value: float) -> float:
        return TOP + plot_h * (1 - max(value, 0.0) / top)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{_h(title)}">',
             f"<title>{_h(title)}</title>"]
    for fraction in (0.0, 0.5, 1.0):
        gy = TOP + plot_h * (1 - fraction)
        parts.append(f'<line class="grid" x1="{LEFT}" y1="{gy:.1f}" x2="{WIDTH - RIGHT}" y2="{gy:.1f}" '
                     'stroke="#d0d7de" stroke-width="1"/>')
        parts.append(f'<text class="axis" x="{LEFT - 4}" y="{gy + 3:.1f}" text-anchor="end" '
                     f'font-size="9" fill="#57606a">{_h(_label(top * fraction, unit))}</text>')
    if labels:
        last = len(labels) - 1
        for index in sorted({0, last // 3, 2 * last // 3, last}):
            parts.append(f'<text class="axis" x="{x(index):.1f}" y="{HEIGHT - 8}" text-anchor="middle" '
                         f'font-size="9" fill="#57606a">{_h(labels[index])}</text>')
    for number, item in enumerate(series):
        colour = COLOURS[number % len(COLOURS)]
        runs: list[list[tuple[float, float]]] = [[]]
        for index, value in enumerate(item.values):
            if isinstance(value, int | float):
                runs[-1].append((x(index), y(float(value))))
            elif runs[-1]:
                runs.append([])
        for run in runs:
            if len(run) > 1:
                points = " ".join(f"{px:.1f},{py:.1f}" for px, py in run)
                parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
            for px, py in run:
                parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{colour}"/>')
    if not numbers:
        parts.append(f'<text x="{LEFT + plot_w / 2:.1f}" y="{TOP + plot_h / 2:.1f}" text-anchor="middle" '
                     'font-size="11" fill="#57606a">no data yet</text>')
    parts.append("</svg>")
    return "".join(parts)
