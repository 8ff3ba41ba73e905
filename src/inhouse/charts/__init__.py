"""Accessible SVG charts as strings, in pure Python (standard library only).

Each chart is an `<svg role="img">` labelled by its `<title>` and a `<desc>` that sums it up
in words; every label is escaped (a name may hold markup), no `style=` attribute is written
(pages run under a Content-Security-Policy that forbids them), and colours have at least 4.5:1
contrast on white. Values must be finite and >= 0 (ValueError otherwise). Zero rows give a
small "No data" chart. Element ids derive from the chart's content, so different charts
inlined in one page never clash. The web pages inline these; `inhouse.client` shows them in
notebooks."""

from __future__ import annotations

from inhouse.charts.bars import bar_chart, stacked_bar_chart
from inhouse.charts.lines import line_chart

__all__ = ["bar_chart", "line_chart", "stacked_bar_chart"]
