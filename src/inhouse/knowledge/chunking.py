"""Blocks -> chunks that follow the document's structure and fit the embedder.

A chunk never crosses a heading: it holds whole paragraphs, list items or rows of one
section, prefixed with the section's heading path (so "Notice" under "Termination" is found
by either word). A block too long for one chunk is cut at sentences, then at words. Each new
chunk of a section repeats the end of the one before (`overlap` tokens), so a passage cut in
two is still found whole in one of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from inhouse.knowledge.blocks import Block, Kind, Parsed

# Content tokens of each text (without the model's [CLS]/[SEP]); additive over whitespace.
TokenCounter = Callable[[Sequence[str]], list[int]]
SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")
HEADING_SEPARATOR = " > "


@dataclass(frozen=True)
class Chunk:
    text: str
    location: dict[str, Any]
    token_count: int


@dataclass(frozen=True)
class _Piece:
    text: str
    tokens: int
    page: int | None
    row: str | None
    continues: bool  # the rest of the block the piece before began


@dataclass
class _Open:
    """The chunk being filled: its section, its pieces, and the overlap it starts with."""

    headings: tuple[str, ...]
    budget: int
    lead: str = ""
    lead_tokens: int = 0
    pieces: list[_Piece] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return self.lead_tokens + sum(p.tokens for p in self.pieces)


def _sections(blocks: Sequence[Block]) -> Iterator[tuple[tuple[str, ...], list[Block]]]:
    """(heading path, the non-heading blocks under it), in document order."""
    path: list[tuple[int, str]] = []
    body: list[Block] = []
    for block in blocks:
        if block.kind is Kind.HEADING:
            if body:
                yield tuple(t for _, t in path), body
                body = []
            while path and path[-1][0] >= block.level:
                path.pop()
            path.append((block.level, block.text))
        else:
            body.append(block)
    if body:
        yield tuple(t for _, t in path), body


def _word_windows(text: str, count: TokenCounter, budget: int) -> list[str]:
    """`text` cut into runs of whole words of at most `budget` tokens each."""
    words, windows, start = text.split(), [], 0
    width = max(1, budget * 3 // 4)
    while start < len(words):
        size = min(width, len(words) - start)
        while size > 1 and count([" ".join(words[start : start + size])])[0] > budget:
            size = size * 3 // 4
        windows.append(" ".join(words[start : start + size]))
        start += size
    return windows


def _split(text: str, tokens: int, count: TokenCounter, budget: int) -> list[tuple[str, int]]:
    """(text, tokens) parts of one block, each within `budget`: sentences, then words."""
    if tokens <= budget:
        return [(text, tokens)]
    parts: list[tuple[str, int]] = []
    sentences = [s for s in SENTENCE_END.split(text) if s.strip()]
    for sentence, n in zip(sentences, count(sentences), strict=True):
        if n <= budget:
            parts.append((sentence, n))
        else:
            windows = _word_windows(sentence, count, budget)
            parts.extend(zip(windows, count(windows), strict=True))
    return parts


def _location(chunk: _Open) -> dict[str, Any]:
    location: dict[str, Any] = {"headings": list(chunk.headings)} if chunk.headings else {}
    for key, values in (
        ("page", [p.page for p in chunk.pieces if p.page is not None]),
        ("row", [p.row for p in chunk.pieces if p.row is not None]),
    ):
        if values:
            location[key] = values[0]
            if values[-1] != values[0]:
                location[f"last_{key}"] = values[-1]
    return location


def _close(chunk: _Open, header: str, header_tokens: int) -> Chunk:
    body = chunk.lead
    for piece in chunk.pieces:
        separator = (" " if piece.continues else "\n") if body else ""
        body += separator + piece.text
    text = f"{header}\n{body}" if header else body
    return Chunk(text, _location(chunk), chunk.tokens + header_tokens)


def _lead(previous: _Open, count: TokenCounter, overlap: int) -> tuple[str, int]:
    """The end of `previous` (at most `overlap` tokens) that the next chunk starts with."""
    if overlap <= 0 or not previous.pieces:
        return "", 0
    kept: list[_Piece] = []
    for piece in reversed(previous.pieces):
        if sum(p.tokens for p in kept) + piece.tokens > overlap:
            break
        kept.insert(0, piece)
    if kept:
        return "\n".join(p.text for p in kept), sum(p.tokens for p in kept)
    words = previous.pieces[-1].text.split()
    size = max(1, overlap * 3 // 4)
    while size > 0:
        tail = " ".join(words[-size:])
        n = count([tail])[0]
        if n <= overlap:
            return tail, n
        size = size * 3 // 4
    return "", 0


def chunk(parsed: Parsed, count: TokenCounter, max_tokens: int, overlap: int) -> list[Chunk]:
    """Chunks of at most `max_tokens` content tokens, in document order, with locations."""
    return [
        piece
        for headings, blocks in _sections(parsed.blocks)
        for piece in _section_chunks(headings, blocks, count, max_tokens, overlap)
    ]


def _section_chunks(
    headings: tuple[str, ...],
    blocks: list[Block],
    count: TokenCounter,
    max_tokens: int,
    overlap: int,
) -> list[Chunk]:
    header = HEADING_SEPARATOR.join(headings)
    header_tokens = count([header])[0] if header else 0
    budget = max(8, max_tokens - header_tokens)
    pieces = [
        _Piece(text, n, block.page, block.row, continues=i > 0)
        for block, tokens in zip(blocks, count([b.text for b in blocks]), strict=True)
        for i, (text, n) in enumerate(_split(block.text, tokens, count, budget))
    ]
    done: list[Chunk] = []
    current = _Open(headings, budget)
    for piece in pieces:
        if current.pieces and current.tokens + piece.tokens > budget:
            done.append(_close(current, header, header_tokens))
            lead, lead_tokens = _lead(current, count, min(overlap, budget - piece.tokens))
            current = _Open(headings, budget, lead, lead_tokens)
        current.pieces.append(piece)
    if current.pieces:
        done.append(_close(current, header, header_tokens))
    return done
