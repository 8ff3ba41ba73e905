"""Line charts: one line per series over labels in order (days, steps), with a legend."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from inhouse.charts.svg import (
    AXIS,
    CHAR_WIDTH,
    DASHES,
    GRID,
    PALETTE,
    WIDTH,
    Scale,
    amount,
    chart_id,
    checked,
    empty,
    frame,
    legend,
    number,
    scale,
    shorten,
    text,
)

PLOT_LEFT = 64
PLOT_RIGHT = 48  # half the widest label under the axis, centred on the last point
PLOT_HEIGHT = 200
LABEL_CHARS = 12


def line_chart(
    title: str, labels: Sequence[str], series: Mapping[str, Sequence[float]], unit: str = ""
) -> str:
    """An accessible SVG line chart (one line per series over `labels`) as a string."""
    names = list(series)
    columns = []
    for name in names:
        if len(series[name]) != len(labels):
            raise ValueError(
                f"line_chart: series {name!r} has {len(series[name])} values"
                f" for {len(labels)} labels"
            )
        columns.append(checked(series[name], f"line_chart series {name!r}"))
    ident = chart_id("line", title, list(labels), names, columns, unit)
    if not labels or not names:
        return empty(ident, title, "line chart")
    body, legend_height = legend(names, 30, line=True)
    top = 42 + legend_height
    bottom = top + PLOT_HEIGHT
    axis = scale(max(max(column) for column in columns))
    xs = _positions(len(labels))
    body += _value_axis(axis, top, bottom, unit)
    body += _label_axis(labels, xs, bottom)
    for j, (name, column) in enumerate(zip(names, columns, strict=True)):
        ys = [bottom - axis.at(v, PLOT_HEIGHT) for v in column]
        titles = [
            f"{name}, {label}: {amount(v, unit)}" for label, v in zip(labels, column, strict=True)
        ]
        body += _line(j, xs, ys, titles)
    return frame(ident, title, _description(labels, names, columns, unit), bottom + 34, body)


def _positions(count: int) -> list[float]:
    width = WIDTH - PLOT_LEFT - PLOT_RIGHT
    if count == 1:
        return [PLOT_LEFT + width / 2]
    return [PLOT_LEFT + i * width / (count - 1) for i in range(count)]


def _value_axis(axis: Scale, top: float, bottom: float, unit: str) -> list[str]:
    """Horizontal grid lines with tick labels on the left, and the axis title turned upright."""
    parts = []
    for tick in axis.ticks:
        y = bottom - axis.at(tick, PLOT_HEIGHT)
        parts.append(
            f'<line x1="{PLOT_LEFT}" y1="{y:.1f}" x2="{WIDTH - PLOT_RIGHT}" y2="{y:.1f}"'
            f' stroke="{GRID}"/>'
        )
        parts.append(
            f'<text x="{PLOT_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{AXIS}">'
            f"{text(number(tick))}</text>"
        )
    middle = (top + bottom) / 2
    parts.append(
        f'<text x="12" y="{middle:.1f}" transform="rotate(-90 12 {middle:.1f})"'
        f' text-anchor="middle" fill="{AXIS}">{text(unit or "value")}</text>'
    )
    parts.append(
        f'<line x1="{PLOT_LEFT}" y1="{bottom:.1f}" x2="{WIDTH - PLOT_RIGHT}" y2="{bottom:.1f}"'
        f' stroke="{AXIS}"/>'
    )
    return parts


def _label_axis(labels: Sequence[str], xs: list[float], bottom: float) -> list[str]:
    """As many labels under the axis as fit side by side: every first, then every k-th."""
    longest = min(max(len(label) for label in labels), LABEL_CHARS)
    room = longest * 12 * CHAR_WIDTH + 16
    fits = max(int((WIDTH - PLOT_LEFT - PLOT_RIGHT) // room), 1)
    step = math.ceil(len(labels) / fits)
    parts = []
    for i in range(0, len(labels), step):
        parts.append(
            f'<text x="{xs[i]:.1f}" y="{bottom + 18:.1f}" text-anchor="middle" fill="{AXIS}">'
            f"<title>{text(labels[i])}</title>{text(shorten(labels[i], LABEL_CHARS))}</text>"
        )
    return parts


def _line(index: int, xs: list[float], ys: list[float], titles: list[str]) -> list[str]:
    """One series: a dashed-per-series polyline and a titled point per value."""
    colour = PALETTE[index % len(PALETTE)]
    dash = DASHES[index % len(DASHES)]
    dashed = f' stroke-dasharray="{dash}"' if dash else ""
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
    parts = [
        f'<polyline class="line" points="{points}" fill="none" stroke="{colour}"'
        f' stroke-width="2"{dashed}/>'
    ]
    for x, y, title in zip(xs, ys, titles, strict=True):
        parts.append(
            f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}">'
            f"<title>{text(title)}</title></circle>"
        )
    return parts


def _description(
    labels: Sequence[str], names: list[str], columns: list[list[float]], unit: str
) -> str:
    best = max(
        ((j, i) for j in range(len(names)) for i in range(len(labels))),
        key=lambda at: columns[at[0]][at[1]],
    )
    span = labels[0] if len(labels) == 1 else f"{labels[0]} to {labels[-1]}"
    return (
        f"Line chart of {', '.join(names)} over {len(labels)} points ({span})"
        f"{f' in {unit}' if unit else ''}. Highest: {names[best[0]]} at {labels[best[1]]}"
        f" with {amount(columns[best[0]][best[1]], unit)}."
    )
