"""Parsers for PDF (pypdf) and DOCX (python-docx), with the archive checked before either runs.

pypdf is pure Python: a hostile PDF can make it fail or be slow, not corrupt memory, which
matters more for files from a shared drive than PDFium's extra speed (see README, Knowledge).
"""

from __future__ import annotations

import io
import re
import zipfile

from inhouse.knowledge.blocks import Block, Kind, Parsed, ParseError
from inhouse.knowledge.text_formats import PARAGRAPH_BREAK, clean

HEADING_STYLE = re.compile(r"^(?:heading|überschrift|titre)\s*(\d)$", re.IGNORECASE)
MAX_ZIP_ENTRIES = 10_000


def parse_pdf(data: bytes, title: str) -> Parsed:
    """One paragraph block per blank-line-separated run of text, with its 1-based page."""
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted and not reader.decrypt(""):
        raise ParseError("the PDF is encrypted with a password")
    blocks: list[Block] = []
    for number, page in enumerate(reader.pages, start=1):
        text = page.extract_text() or ""
        for part in PARAGRAPH_BREAK.split(text):
            if cleaned := clean(part):
                blocks.append(Block(Kind.PARAGRAPH, cleaned, page=number))
    metadata_title = reader.metadata.title if reader.metadata else None
    return Parsed(clean(str(metadata_title)) if metadata_title else title, blocks)


def check_archive(data: bytes, max_unpacked: int) -> None:
    """ParseError unless `data` is a zip whose entries unpack to at most `max_unpacked` bytes.

    The sizes are the ones the archive declares; zipfile never yields more than an entry
    declares, so a lying header cannot get past this either.
    """
    try:
        entries = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except zipfile.BadZipFile:
        raise ParseError("not a DOCX file (it is not a zip archive)") from None
    if len(entries) > MAX_ZIP_ENTRIES:
        raise ParseError(f"the archive holds {len(entries)} entries (limit {MAX_ZIP_ENTRIES})")
    unpacked = sum(entry.file_size for entry in entries)
    if unpacked > max_unpacked:
        raise ParseError(
            f"the archive unpacks to {unpacked} bytes, more than the limit of {max_unpacked} "
            "(setting knowledge.max_unpacked_mb)"
        )


def _paragraph_block(text: str, style: str) -> Block:
    heading = HEADING_STYLE.match(style)
    if heading:
        return Block(Kind.HEADING, text, level=int(heading.group(1)))
    if style.lower() == "title":
        return Block(Kind.HEADING, text, level=1)
    if style.lower().startswith("list"):
        return Block(Kind.ITEM, text)
    return Block(Kind.PARAGRAPH, text)


def parse_docx(data: bytes, title: str, max_unpacked: int) -> Parsed:
    """Paragraphs (headings and list items by their style) and table rows, in body order."""
    check_archive(data, max_unpacked)
    import docx
    from docx.table import Table

    document = docx.Document(io.BytesIO(data))
    blocks: list[Block] = []
    for part in document.iter_inner_content():
        if isinstance(part, Table):
            for number, row in enumerate(part.rows, start=1):
                cells = list(dict.fromkeys(clean(cell.text) for cell in row.cells))
                if text := " | ".join(c for c in cells if c):
                    blocks.append(Block(Kind.ROW, text, row=str(number)))
        elif text := clean(part.text):
            style = part.style.name if part.style is not None and part.style.name else ""
            blocks.append(_paragraph_block(text, style))
    core_title = clean(document.core_properties.title or "")
    return Parsed(core_title or title, blocks)
