"""File type by extension -> the parser for it; every failure becomes a ParseError."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePath

from inhouse.knowledge.blocks import Parsed, ParseError
from inhouse.knowledge.office import parse_docx, parse_pdf
from inhouse.knowledge.text_formats import (
    parse_csv,
    parse_html,
    parse_json,
    parse_markdown,
    parse_text,
)

Parser = Callable[[bytes, str], Parsed]
TEXT_PARSERS: dict[str, Parser] = {
    ".md": parse_markdown,
    ".markdown": parse_markdown,
    ".txt": parse_text,
    ".text": parse_text,
    ".rst": parse_text,
    ".log": parse_text,
    ".html": parse_html,
    ".htm": parse_html,
    ".csv": parse_csv,
    ".tsv": parse_csv,
    ".json": parse_json,
    ".pdf": parse_pdf,
}
SUPPORTED = frozenset({*TEXT_PARSERS, ".docx"})


def supported(name: str) -> bool:
    return PurePath(name).suffix.lower() in SUPPORTED


def parse(name: str, data: bytes, *, max_unpacked: int) -> Parsed:
    """Blocks of the file `name` holding `data`; ParseError (with the reason) if unreadable."""
    suffix = PurePath(name).suffix.lower()
    title = PurePath(name).stem
    if not data:
        raise ParseError("the file is empty")
    try:
        if suffix == ".docx":
            parsed = parse_docx(data, title, max_unpacked)
        elif suffix in TEXT_PARSERS:
            parsed = TEXT_PARSERS[suffix](data, title)
        else:
            raise ParseError(f"unsupported file type {suffix or '(none)'!r}")
    except ParseError:
        raise
    except Exception as exc:  # third-party parsers of untrusted bytes raise anything
        raise ParseError(f"cannot read this {suffix} file: {type(exc).__name__}: {exc}") from exc
    if not parsed.blocks:
        raise ParseError("no text found in the file")
    return parsed
