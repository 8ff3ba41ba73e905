"""Chunks follow the document's sections, fit the embedder, overlap, and say where they are."""

from __future__ import annotations

import itertools

from inhouse.embeddings.minilm import MAX_TOKENS, MiniLMEmbedder
from inhouse.knowledge.blocks import Block, Kind, Parsed
from inhouse.knowledge.chunking import chunk
from inhouse.knowledge.ingest import content_tokens
from inhouse.knowledge.parsers import parse

SENTENCE = "The supplier may end this agreement with ninety days of written notice. "


def test_chunks_fit_the_model_and_never_cross_a_heading(embedder: MiniLMEmbedder) -> None:
    text = (
        "# Contract\n\n## Termination\n\n"
        + SENTENCE * 40
        + "\n\n## Payment\n\nInvoices are due in 14 days.\n"
    ).encode()
    chunks = chunk(parse("c.md", text, max_unpacked=1), content_tokens(embedder), 64, 16)
    real = embedder.count_tokens([c.text for c in chunks])
    assert all(n - 2 <= 64 for n in real)  # what the model reads, [CLS]/[SEP] aside
    assert [c.token_count for c in chunks] == [n - 2 for n in real]
    sections = [c.location["headings"] for c in chunks]
    assert sections[-1] == ["Contract", "Payment"]
    assert all(s == ["Contract", "Termination"] for s in sections[:-1])
    assert chunks[-1].text == "Contract > Payment\nInvoices are due in 14 days."
    # every word of the long section is in some chunk
    body = " ".join(c.text for c in chunks[:-1])
    assert body.count("ninety days") >= 40


def test_consecutive_chunks_overlap(embedder: MiniLMEmbedder) -> None:
    blocks = [Block(Kind.PARAGRAPH, f"Paragraph {i} says clause {i} applies.") for i in range(30)]
    chunks = chunk(Parsed("t", blocks), content_tokens(embedder), 48, 12)
    assert len(chunks) > 2
    for before, after in itertools.pairwise(chunks):
        last_line = before.text.splitlines()[-1]
        assert after.text.startswith(last_line)


def test_one_huge_paragraph_is_cut_to_fit(embedder: MiniLMEmbedder) -> None:
    words = " ".join(f"word{i}" for i in range(2000))  # no sentence ends at all
    chunks = chunk(Parsed("t", [Block(Kind.PARAGRAPH, words)]), content_tokens(embedder), 200, 0)
    real = embedder.count_tokens([c.text for c in chunks])
    assert max(real) < MAX_TOKENS and all(n - 2 <= 200 for n in real)
    assert " ".join(c.text for c in chunks).split() == words.split()


def test_rows_and_pages_are_kept_as_locations(embedder: MiniLMEmbedder) -> None:
    rows = [Block(Kind.ROW, f"id: {i}; name: client {i}", row=str(i + 2)) for i in range(40)]
    chunks = chunk(Parsed("t", rows), content_tokens(embedder), 64, 0)
    assert chunks[0].location["row"] == "2"
    assert chunks[-1].location["last_row"] == "41"
    pages = [Block(Kind.PARAGRAPH, "Short text.", page=3)]
    assert chunk(Parsed("t", pages), content_tokens(embedder), 64, 0)[0].location == {"page": 3}
