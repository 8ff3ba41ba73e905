"""SVG charts: well-formed, accessible, escaped, no style attributes, sane at 0/1/60 rows."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from inhouse.charts import bar_chart, line_chart, stacked_bar_chart

NS = {"svg": "http://www.w3.org/2000/svg"}
EVIL = '<script>alert("x")</script> & "quoted" \x00\x07'


def parsed(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.get("role") == "img"
    title, desc = root.find("svg:title", NS), root.find("svg:desc", NS)
    assert title is not None and desc is not None and title.text and desc.text
    assert root.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
    for element in root.iter():
        assert "style" not in element.attrib, element.tag
        assert not any(name.startswith("on") for name in element.attrib), element.tag
    assert root.find(".//svg:script", NS) is None and root.find(".//svg:style", NS) is None
    return root


def bars(root: ET.Element) -> list[ET.Element]:
    return root.findall(".//svg:rect[@class='bar']", NS)


def texts(root: ET.Element) -> str:
    return " ".join("".join(element.itertext()) for element in root.iter())


def test_a_bar_chart_has_one_titled_bar_per_label_and_its_numbers_in_words() -> None:
    svg = bar_chart("Tokens by user", ["root", "mia", "zed"], [1200, 300, 0], unit="tokens")
    root = parsed(svg)
    drawn = bars(root)
    assert len(drawn) == 3
    widths = [float(bar.get("width", "")) for bar in drawn]
    assert widths[0] > widths[1] > widths[2] == 0
    assert [bar.findtext("svg:title", namespaces=NS) for bar in drawn] == [
        "root: 1.2k tokens",
        "mia: 300 tokens",
        "zed: 0 tokens",
    ]
    description = root.findtext("svg:desc", namespaces=NS) or ""
    assert "3 items in tokens" in description and "Largest: root with 1.2k tokens" in description
    assert "tokens" in texts(root)  # the value axis is labelled with the unit


def test_names_with_markup_stay_text() -> None:
    for svg in (
        bar_chart(EVIL, [EVIL], [1.0], unit=EVIL),
        stacked_bar_chart(EVIL, [EVIL], {EVIL: [2.0]}, unit=EVIL),
        line_chart(EVIL, [EVIL], {EVIL: [3.0]}, unit=EVIL),
    ):
        assert "<script" not in svg
        root = parsed(svg)  # raises on malformed XML (the control characters included)
        assert "<script>" in texts(root)  # shown to the reader as the literal name
        assert root.findtext("svg:title", namespaces=NS) == EVIL.replace("\x00", "\ufffd").replace(
            "\x07", "\ufffd"
        )


@pytest.mark.parametrize("rows", [0, 1, 60])
def test_every_chart_copes_with_0_1_and_60_rows(rows: int) -> None:
    labels = [f"user-{i:02d}-with-a-rather-long-name" for i in range(rows)]
    values = [float(i * 1000) for i in range(rows)]
    charts = (
        bar_chart("Bars", labels, values),
        stacked_bar_chart("Stacked", labels, {"prompt": values, "completion": values}),
        line_chart("Lines", labels, {"tokens": values, "requests": [1.0] * rows}),
    )
    for svg in charts:
        root = parsed(svg)
        height = float(root.get("height", "0"))
        assert 0 < height < 2000
        if rows == 0:
            assert "No data" in (root.findtext("svg:desc", namespaces=NS) or "")
    assert len(bars(ET.fromstring(charts[0]))) == rows
    nonzero = sum(1 for v in values if v > 0)
    assert len(bars(ET.fromstring(charts[1]))) == 2 * nonzero
    line = ET.fromstring(charts[2])
    assert len(line.findall(".//svg:circle[@class='point']", NS)) == 2 * rows
    if rows == 60:  # not every day label fits under the axis; the ones shown do not overlap
        shown = [t for t in line.iter("{http://www.w3.org/2000/svg}text") if "user-" in texts(t)]
        assert 2 <= len(shown) < 60


def test_zero_and_huge_values_scale_and_read_well() -> None:
    zero = parsed(bar_chart("Nothing yet", ["a", "b"], [0, 0], unit="USD"))
    assert all(float(bar.get("width", "1")) == 0 for bar in bars(zero))
    huge = parsed(bar_chart("Lots", ["a", "b"], [3.2e13, 5.0], unit="tokens"))
    widths = [float(bar.get("width", "0")) for bar in bars(huge)]
    assert widths[0] < 640 and widths[1] >= 1  # a small non-zero value stays visible
    assert "32T tokens" in texts(huge)
    money = parsed(line_chart("Cost", ["d1", "d2"], {"gpt": [0.004, 12.5]}, unit="USD"))
    assert "12.50 USD" in texts(money) and "0.004 USD" in texts(money)


def test_stacked_segments_add_up_and_have_a_legend() -> None:
    svg = stacked_bar_chart(
        "Savings", ["gpt-4o", "claude"], {"input": [10.0, 2.0], "output": [30.0, 0.0]}, unit="USD"
    )
    root = parsed(svg)
    drawn = bars(root)
    assert len(drawn) == 3  # the zero segment is not drawn
    first = [float(b.get("width", "0")) for b in drawn[:2]]
    assert first[1] == pytest.approx(3 * first[0], rel=0.02)
    assert {"input", "output"} <= set(texts(root).split())
    assert "claude, input: 2 USD" in texts(root)


def test_bad_input_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="2 labels but 1 values"):
        bar_chart("x", ["a", "b"], [1.0])
    with pytest.raises(ValueError, match="finite number >= 0"):
        bar_chart("x", ["a"], [float("nan")])
    with pytest.raises(ValueError, match="finite number >= 0"):
        line_chart("x", ["a"], {"s": [-1.0]})
    with pytest.raises(ValueError, match="series 's' has 1 values for 2 labels"):
        stacked_bar_chart("x", ["a", "b"], {"s": [1.0]})
