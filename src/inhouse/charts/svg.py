"""SVG building blocks: escaping, number formatting, axis scales, colours and the frame.

Everything a chart writes goes through `text()` or `attr()`, so a name such as
`<script>` ends up as inert character data. No `style=` attribute is ever written (a strict
Content-Security-Policy refuses them); presentation attributes carry the looks."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

WIDTH = 640
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"
TEXT = "#1a1a1a"  # 17:1 on white
AXIS = "#595959"  # 7:1 on white
GRID = "#d0d0d0"
# Each has at least 4.5:1 contrast on white, so bars and lines stand out (WCAG 1.4.11 asks 3:1).
PALETTE = ("#1f4fa8", "#a3480a", "#2e6b30", "#7b2d8e", "#b3261e", "#00695c", "#5d4037", "#37474f")
DASHES = ("", "6 3", "2 3", "8 3 2 3", "1 2", "10 4", "4 4", "6 2 1 2")
CHAR_WIDTH = 0.62  # of the font size: generous for sans-serif text, markup characters included
# XML 1.0 allows no C0 controls other than tab/newline/carriage return; nor lone surrogates.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def text(value: str) -> str:
    """`value` as XML character data: markup escaped, characters XML cannot hold replaced."""
    cleaned = _NOT_XML.sub("\ufffd", str(value))
    return cleaned.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def attr(value: str) -> str:
    """`value` escaped for a double-quoted XML attribute."""
    return text(value).replace('"', "&quot;").replace("\n", "&#10;").replace("\t", "&#9;")


def shorten(label: str, chars: int) -> str:
    """`label` cut to at most `chars` characters, with an ellipsis when cut."""
    return label if len(label) <= chars else label[: max(chars - 1, 1)] + "…"


def number(value: float) -> str:
    """A compact, readable number: 0, 12, 3.75, 0.00059, 12.5k, 3.4M, 1.2B, 5T, 2.0e+15."""
    size = abs(value)
    if size >= 1e15:
        return f"{value:.1e}"
    for limit, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if size >= limit:
            return f"{value / limit:.3g}{suffix}"
    if value == int(value):
        return str(int(value))
    if size >= 0.01:
        return f"{value:.2f}"
    digits = 1 - math.floor(math.log10(size))  # two significant digits, never 1e-05
    return f"{value:.{digits}f}".rstrip("0")


def amount(value: float, unit: str) -> str:
    """A number with its unit, as written next to a bar and in a description."""
    return f"{number(value)} {unit}" if unit else number(value)


def checked(values: Iterable[float], what: str) -> list[float]:
    """The values as floats; ValueError for a negative, infinite or NaN one."""
    result = [float(v) for v in values]
    for v in result:
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"{what}: every value must be a finite number >= 0, not {v!r}")
    return result


@dataclass(frozen=True)
class Scale:
    """A value axis from 0 to `top`, with round tick values."""

    top: float
    ticks: tuple[float, ...]

    def at(self, value: float, length: float) -> float:
        return 0.0 if self.top <= 0 else length * value / self.top


def scale(largest: float, most_ticks: int = 5) -> Scale:
    """Round ticks from 0 up to at least `largest` (0..1 when everything is zero)."""
    if largest <= 0:
        return Scale(1.0, (0.0, 0.5, 1.0))
    rough = largest / max(most_ticks - 1, 1)
    magnitude = 10 ** math.floor(math.log10(rough))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= rough)
    count = math.ceil(largest / step - 1e-9)
    return Scale(step * count, tuple(step * i for i in range(count + 1)))


def chart_id(*parts: object) -> str:
    """A stable id for a chart's title and description, from what it shows."""
    digest = hashlib.sha256(repr(parts).encode("utf-8", "replace")).hexdigest()
    return "chart-" + digest[:12]


def frame(ident: str, title: str, description: str, height: float, body: Sequence[str]) -> str:
    """The <svg> element: role img, labelled by its <title> and <desc>, then `body`."""
    return "".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{WIDTH}"'
            f' height="{height:.0f}" viewBox="0 0 {WIDTH} {height:.0f}"'
            f' aria-labelledby="{ident}-title {ident}-desc" font-family="{attr(FONT)}"'
            f' font-size="12" fill="{TEXT}">',
            f'<title id="{ident}-title">{text(title)}</title>',
            f'<desc id="{ident}-desc">{text(description)}</desc>',
            f'<text x="0" y="18" font-size="15" font-weight="bold">{text(shorten(title, 70))}'
            "</text>",
            *body,
            "</svg>",
        ]
    )


def legend(names: Sequence[str], y: float, line: bool = False) -> tuple[list[str], float]:
    """A legend row (wrapping) of swatches and names; returns its elements and its height."""
    parts: list[str] = []
    x, row = 0.0, 0
    for i, name in enumerate(names):
        label = shorten(name, 28)
        width = 22 + len(label) * 12 * CHAR_WIDTH + 16
        if x > 0 and x + width > WIDTH:
            x, row = 0.0, row + 1
        top = y + row * 20
        parts.append(swatch(i, x, top, line))
        parts.append(f'<text x="{x + 20:.1f}" y="{top + 10:.1f}">{text(label)}</text>')
        x += width
    return parts, (row + 1) * 20 if names else 0


def swatch(index: int, x: float, top: float, line: bool) -> str:
    colour = PALETTE[index % len(PALETTE)]
    if not line:
        return f'<rect x="{x:.1f}" y="{top:.1f}" width="14" height="14" fill="{colour}"/>'
    dash = DASHES[index % len(DASHES)]
    dashed = f' stroke-dasharray="{dash}"' if dash else ""
    return (
        f'<line x1="{x:.1f}" y1="{top + 7:.1f}" x2="{x + 16:.1f}" y2="{top + 7:.1f}"'
        f' stroke="{colour}" stroke-width="3"{dashed}/>'
    )


def empty(ident: str, title: str, what: str) -> str:
    """The chart of no data: its title and a line saying so."""
    message = f"No data: the {what} has nothing to show."
    return frame(
        ident,
        title,
        message,
        60,
        [f'<text x="0" y="44" fill="{AXIS}">{text(message)}</text>'],
    )
