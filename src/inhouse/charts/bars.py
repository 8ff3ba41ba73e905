"""Horizontal bar charts, plain and stacked: one row per label, so long names stay readable."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from inhouse.charts.svg import (
    AXIS,
    CHAR_WIDTH,
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

ROW = 22
BAR = 14
LABEL_CHARS = 22
VALUE_ROOM = 76


def bar_chart(title: str, labels: Sequence[str], values: Sequence[float], unit: str = "") -> str:
    """An accessible SVG bar chart (one horizontal bar per label) as a string."""
    if len(labels) != len(values):
        raise ValueError(f"bar_chart: {len(labels)} labels but {len(values)} values")
    numbers = checked(values, "bar_chart")
    ident = chart_id("bar", title, list(labels), numbers, unit)
    if not labels:
        return empty(ident, title, "bar chart")
    top = max(range(len(numbers)), key=numbers.__getitem__)
    description = (
        f"Bar chart of {len(labels)} {_noun(len(labels))}{_in(unit)}. "
        f"Largest: {labels[top]} with {amount(numbers[top], unit)}; "
        f"total {amount(sum(numbers), unit)}."
    )
    rows = [[v] for v in numbers]
    return _horizontal(ident, title, description, labels, rows, [], unit)


def stacked_bar_chart(
    title: str, labels: Sequence[str], series: Mapping[str, Sequence[float]], unit: str = ""
) -> str:
    """An accessible SVG stacked bar chart: per label, one segment per series, with a legend."""
    names = list(series)
    columns = []
    for name in names:
        if len(series[name]) != len(labels):
            raise ValueError(
                f"stacked_bar_chart: series {name!r} has {len(series[name])} values"
                f" for {len(labels)} labels"
            )
        columns.append(checked(series[name], f"stacked_bar_chart series {name!r}"))
    ident = chart_id("stacked", title, list(labels), names, columns, unit)
    if not labels or not names:
        return empty(ident, title, "stacked bar chart")
    rows = [[column[i] for column in columns] for i in range(len(labels))]
    totals = [sum(row) for row in rows]
    top = max(range(len(totals)), key=totals.__getitem__)
    description = (
        f"Stacked bar chart of {len(labels)} {_noun(len(labels))}{_in(unit)}, "
        f"each split into {', '.join(names)}. "
        f"Largest total: {labels[top]} with {amount(totals[top], unit)}; "
        f"total {amount(sum(totals), unit)}."
    )
    return _horizontal(ident, title, description, labels, rows, names, unit)


def _horizontal(
    ident: str,
    title: str,
    description: str,
    labels: Sequence[str],
    rows: list[list[float]],
    names: list[str],
    unit: str,
) -> str:
    body, legend_height = legend(names, 30) if names else ([], 0)
    top = 34 + legend_height
    label_chars = min(max(len(label) for label in labels), LABEL_CHARS)
    left = max(label_chars * 12 * CHAR_WIDTH, 24) + 16
    width = WIDTH - left - VALUE_ROOM
    bottom = top + ROW * len(labels)
    axis = scale(max(sum(row) for row in rows))
    body += _value_axis(axis, left, width, top, bottom, unit)
    body += _row_labels(ident, labels, top, left - 6)
    for i, (label, row) in enumerate(zip(labels, rows, strict=True)):
        y = top + i * ROW
        x = left
        for j, value in enumerate(row):
            if names and value == 0:
                continue
            length = max(axis.at(value, width), 1.0) if value > 0 else 0.0
            what = f"{label}, {names[j]}" if names else label
            body.append(
                f'<rect class="bar" x="{x:.1f}" y="{y + (ROW - BAR) / 2:.1f}"'
                f' width="{length:.1f}" height="{BAR}" fill="{PALETTE[j % len(PALETTE)]}">'
                f"<title>{text(what)}: {text(amount(value, unit))}</title></rect>"
            )
            x += length
        body.append(
            f'<text x="{x + 4:.1f}" y="{y + ROW / 2 + 4:.1f}">{text(amount(sum(row), ""))}</text>'
        )
    return frame(ident, title, description, bottom + 46, body)


def _row_labels(ident: str, labels: Sequence[str], top: float, room: float) -> list[str]:
    """The labels left of the bars, cut to `room` pixels (wide letters must not overlap the
    bars); each keeps its whole text as a tooltip."""
    clip = f"{ident}-labels"
    parts = [
        f'<clipPath id="{clip}"><rect x="0" y="{top:.1f}" width="{room:.1f}"'
        f' height="{ROW * len(labels)}"/></clipPath>',
        f'<g clip-path="url(#{clip})">',
    ]
    for i, label in enumerate(labels):
        parts.append(
            f'<text x="0" y="{top + i * ROW + ROW / 2 + 4:.1f}">'
            f"<title>{text(label)}</title>{text(shorten(label, LABEL_CHARS))}</text>"
        )
    parts.append("</g>")
    return parts


def _value_axis(
    axis: Scale, left: float, width: float, top: float, bottom: float, unit: str
) -> list[str]:
    """Grid lines and tick labels along the bottom, the axis title, the category axis line."""
    parts = []
    for tick in axis.ticks:
        x = left + axis.at(tick, width)
        parts.append(
            f'<line x1="{x:.1f}" y1="{top:.1f}" x2="{x:.1f}" y2="{bottom:.1f}" stroke="{GRID}"/>'
        )
        parts.append(
            f'<text x="{x:.1f}" y="{bottom + 16:.1f}" text-anchor="middle" fill="{AXIS}">'
            f"{text(number(tick))}</text>"
        )
    parts.append(
        f'<line x1="{left:.1f}" y1="{top:.1f}" x2="{left:.1f}" y2="{bottom:.1f}" stroke="{AXIS}"/>'
    )
    parts.append(
        f'<text x="{left + width / 2:.1f}" y="{bottom + 36:.1f}" text-anchor="middle"'
        f' fill="{AXIS}">{text(unit or "value")}</text>'
    )
    return parts


def _noun(count: int) -> str:
    return "item" if count == 1 else "items"


def _in(unit: str) -> str:
    return f" in {unit}" if unit else ""
