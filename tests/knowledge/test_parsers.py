"""Each format comes out as the structure a reader sees; a bad file fails alone, with a reason."""

from __future__ import annotations

import pytest

from inhouse.knowledge.blocks import Kind, ParseError
from inhouse.knowledge.parsers import parse
from tests.knowledge.files import docx_file, tiny_pdf, zip_bomb

LIMIT = 16 * 2**20


def kinds_and_texts(name: str, data: bytes) -> list[tuple[str, str]]:
    return [(b.kind.value, b.text) for b in parse(name, data, max_unpacked=LIMIT).blocks]


def test_markdown_headings_paragraphs_items_and_table_rows() -> None:
    text = (
        b"# Contract\n\nThe **notice** period\nis 30 days.\n\n- first item\n- second\n\n"
        b"| a | b |\n|---|---|\n| 1 | 2 |\n"
    )
    assert kinds_and_texts("c.md", text) == [
        ("heading", "Contract"),
        ("paragraph", "The notice period is 30 days."),
        ("item", "first item"),
        ("item", "second"),
        ("row", "a | b"),
        ("row", "1 | 2"),
    ]


def test_html_keeps_text_and_drops_scripts() -> None:
    page = (
        b"<html><head><title>Policy</title><style>p{}</style></head><body><h2>Leave</h2>"
        b"<p>Ask <b>your</b> manager.</p><script>alert(1)</script><ul><li>one</li></ul>"
        b"<table><tr><th>day</th><td>5</td></tr></table></body></html>"
    )
    parsed = parse("p.html", page, max_unpacked=LIMIT)
    assert parsed.title == "Policy"
    assert [(b.kind, b.text) for b in parsed.blocks] == [
        (Kind.HEADING, "Leave"),
        (Kind.PARAGRAPH, "Ask your manager."),
        (Kind.ITEM, "one"),
        (Kind.ROW, "day | 5"),
    ]


def test_csv_rows_carry_their_line_number() -> None:
    parsed = parse("a.csv", b"name,notes\nacme,pays late\nbeta,\n", max_unpacked=LIMIT)
    assert [(b.text, b.row) for b in parsed.blocks] == [
        ("name: acme; notes: pays late", "2"),
        ("name: beta", "3"),
    ]


def test_json_records_become_rows() -> None:
    data = b'[{"id": 7, "tags": ["vip"], "owner": {"name": "ann"}}]'
    assert kinds_and_texts("r.json", data) == [("row", "id: 7; tags.0: vip; owner.name: ann")]


def test_text_paragraphs_and_latin1_fallback() -> None:
    assert kinds_and_texts("n.txt", "caf\xe9 one\n\ntwo\n".encode("latin-1")) == [
        ("paragraph", "caf\xe9 one"),
        ("paragraph", "two"),
    ]


def test_pdf_text_with_page_numbers() -> None:
    parsed = parse("d.pdf", tiny_pdf(["Alpha page", "Beta page"]), max_unpacked=LIMIT)
    assert [(b.text, b.page) for b in parsed.blocks] == [("Alpha page", 1), ("Beta page", 2)]


def test_docx_headings_paragraphs_and_table_rows() -> None:
    data = docx_file("Terms", ["Notice is thirty days."], [["term", "value"], ["fee", "10"]])
    assert kinds_and_texts("t.docx", data) == [
        ("heading", "Terms"),
        ("paragraph", "Notice is thirty days."),
        ("row", "term | value"),
        ("row", "fee | 10"),
    ]


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("empty.md", b"", "empty"),
        ("broken.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog >>\ngarbage", "pdf"),
        ("broken.docx", b"PK\x03\x04 not really a zip", "not a zip"),
        ("broken.json", b'{"a": ', "not valid JSON"),
        ("image.png", b"\x89PNG....", "unsupported file type"),
        ("blank.txt", b"   \n\n  ", "no text"),
    ],
)
def test_unreadable_files_fail_with_a_reason(name: str, data: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as raised:
        parse(name, data, max_unpacked=LIMIT)
    assert reason.lower() in raised.value.message.lower()


def test_zip_bomb_docx_is_refused_before_it_is_unpacked() -> None:
    bomb = zip_bomb(64 * 2**20)  # 64 MiB of zeros in about 64 KiB
    assert len(bomb) < 2**20
    with pytest.raises(ParseError) as raised:
        parse("bomb.docx", bomb, max_unpacked=LIMIT)
    assert "unpacks to 67108" in raised.value.message
    assert "knowledge.max_unpacked_mb" in raised.value.message
