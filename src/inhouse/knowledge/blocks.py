"""What a parser hands the chunker: a document as a sequence of structural blocks."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from inhouse.errors import InvalidRequest


class Kind(enum.StrEnum):
    HEADING = "heading"  # starts a section; `level` 1 is the outermost
    PARAGRAPH = "paragraph"
    ITEM = "item"  # a list item
    ROW = "row"  # a table, CSV or JSON record; `row` names it


@dataclass(frozen=True)
class Block:
    kind: Kind
    text: str
    level: int = 0  # headings only
    page: int | None = None  # 1-based, for paged formats
    row: str | None = None  # row id: a CSV line number, a JSON index or key


@dataclass(frozen=True)
class Parsed:
    title: str
    blocks: list[Block] = field(default_factory=list)


class ParseError(InvalidRequest):
    """This file cannot be read as its type says; the message is the reason, for the user."""

    code = "unparseable_file"
