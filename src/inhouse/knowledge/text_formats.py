"""Parsers for text formats: Markdown (markdown-it-py), plain text, HTML, CSV, JSON (stdlib)."""

from __future__ import annotations

import csv
import io
import json
import re
from html.parser import HTMLParser
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token

from inhouse.knowledge.blocks import Block, Kind, Parsed, ParseError

PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
SPACES = re.compile(r"\s+")
# flattened JSON records longer than this many fields become one block per field
MAX_RECORD_FIELDS = 64


def decode(data: bytes) -> str:
    """UTF-8 (with or without BOM), else Latin-1, which decodes any bytes."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def clean(text: str) -> str:
    return SPACES.sub(" ", text).strip()


def parse_text(data: bytes, title: str) -> Parsed:
    """Paragraphs are separated by blank lines."""
    parts = (clean(p) for p in PARAGRAPH_BREAK.split(decode(data)))
    return Parsed(title, [Block(Kind.PARAGRAPH, p) for p in parts if p])


def _inline(token: Token) -> str:
    pieces = []
    for child in token.children or []:
        if child.type in ("softbreak", "hardbreak"):
            pieces.append(" ")
        else:
            pieces.append(child.content)
    return clean("".join(pieces))


def parse_markdown(data: bytes, title: str) -> Parsed:
    """Headings, paragraphs, list items, code blocks and table rows, in document order."""
    tokens = MarkdownIt("commonmark").enable("table").parse(decode(data))
    blocks: list[Block] = []
    heading, items = 0, 0
    cells: list[str] | None = None
    for token in tokens:
        if token.type == "heading_open":
            heading = int(token.tag[1:])
        elif token.type == "list_item_open":
            items += 1
        elif token.type == "list_item_close":
            items -= 1
        elif token.type == "tr_open":
            cells = []
        elif token.type == "tr_close" and cells is not None:
            blocks.append(Block(Kind.ROW, " | ".join(cells)))
            cells = None
        elif token.type in ("fence", "code_block") and token.content.strip():
            blocks.append(Block(Kind.PARAGRAPH, token.content.strip()))
        elif token.type == "inline":
            text = _inline(token)
            if cells is not None:
                cells.append(text)
            elif text and heading:
                blocks.append(Block(Kind.HEADING, text, level=heading))
            elif text:
                blocks.append(Block(Kind.ITEM if items else Kind.PARAGRAPH, text))
            heading = 0
    first = next((b.text for b in blocks if b.kind is Kind.HEADING), title)
    return Parsed(first, blocks)


class _HTMLBlocks(HTMLParser):
    """Text of block elements; script, style and the like are dropped."""

    SKIP = frozenset({"script", "style", "noscript", "template", "head", "svg"})
    BREAKS = frozenset({"p", "div", "section", "article", "blockquote", "pre", "br", "table"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.title = ""
        self._text: list[str] = []
        self._kind, self._level = Kind.PARAGRAPH, 0
        self._skipping = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self._skipping += 1
        elif tag == "title":
            self._in_title = True
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush(Kind.HEADING, int(tag[1]))
        elif tag == "li":
            self._flush(Kind.ITEM)
        elif tag == "tr":
            self._flush(Kind.ROW)
        elif tag in ("td", "th") and self._text:
            self._text.append(" | ")
        elif tag in self.BREAKS:
            self._flush(Kind.PARAGRAPH)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag == "title":
            self._in_title = False
        elif tag in self.BREAKS or tag in ("li", "tr") or re.fullmatch(r"h[1-6]", tag):
            self._flush(Kind.PARAGRAPH)

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._skipping:
            self._text.append(data)

    def _flush(self, next_kind: Kind, level: int = 0) -> None:
        text = clean("".join(self._text))
        if text:
            self.blocks.append(Block(self._kind, text, level=self._level))
        self._text = []
        self._kind, self._level = next_kind, level


def parse_html(data: bytes, title: str) -> Parsed:
    parser = _HTMLBlocks()
    parser.feed(decode(data))
    parser.close()
    parser._flush(Kind.PARAGRAPH)
    return Parsed(clean(parser.title) or title, parser.blocks)


def parse_csv(data: bytes, title: str) -> Parsed:
    """One block per row, as `column: value` pairs; the row id is the record's line number."""
    text = decode(data)
    try:
        dialect: Any = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    try:
        rows = list(csv.reader(io.StringIO(text), dialect))
    except csv.Error as exc:
        raise ParseError(f"not a valid CSV file: {exc}") from None
    if not rows:
        return Parsed(title)
    header, blocks = rows[0], []
    for number, row in enumerate(rows[1:], start=2):
        pairs = [f"{name}: {value}" for name, value in zip(header, row, strict=False) if value]
        if pairs:
            blocks.append(Block(Kind.ROW, "; ".join(pairs), row=str(number)))
    return Parsed(title, blocks)


def _flatten(value: Any, prefix: str) -> list[str]:
    if isinstance(value, dict):
        return [line for k, v in value.items() for line in _flatten(v, f"{prefix}{k}.")]
    if isinstance(value, list):
        return [line for i, v in enumerate(value) for line in _flatten(v, f"{prefix}{i}.")]
    return [f"{prefix.rstrip('.')}: {value}"] if value not in (None, "") else []


def parse_json(data: bytes, title: str) -> Parsed:
    """A list (or object) of records: one block per record, its fields as `path: value`."""
    try:
        value = json.loads(decode(data))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ParseError(f"not valid JSON: {exc}") from None
    if isinstance(value, list):
        records = [(str(i), v) for i, v in enumerate(value)]
    elif isinstance(value, dict):
        records = [(str(k), {k: v}) for k, v in value.items()]
    else:
        records = [("0", value)]
    blocks: list[Block] = []
    for row, record in records:
        lines = _flatten(record, "")
        groups = [lines] if len(lines) <= MAX_RECORD_FIELDS else [[line] for line in lines]
        blocks.extend(Block(Kind.ROW, "; ".join(g), row=row) for g in groups if g)
    return Parsed(title, blocks)
