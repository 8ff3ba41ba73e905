"""Keyword search skips English stop words (on SQLite as PostgreSQL's `english` search does),
and fusion weighs the vector list above the keyword list, as the retrieval benchmark chose."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import select, text

from inhouse.auth.authenticate import local_operator
from inhouse.knowledge import keywords
from inhouse.knowledge.keywords import keyword_candidates
from inhouse.knowledge.search import Mode, fuse, search
from inhouse.store.db import Database
from inhouse.store.migrate import alembic_config, upgrade
from inhouse.store.tables import KnowledgeChunk, KnowledgeCollection, KnowledgeDocument
from tests.knowledge.conftest import ACTOR, Knowledge, write

DOCS = {
    "acme.md": "Either party may terminate the agreement with ninety days written notice.",
    "leave.txt": "The employees receive twenty-five days of paid holiday each year.",
}


def test_a_stop_word_alone_matches_nothing(knowledge: Knowledge, tmp_path: Path) -> None:
    knowledge.people(lambda d: d.add_group("staff"))
    knowledge.service.create(ACTOR, "docs", "staff")
    knowledge.service.add(ACTOR, "docs", write(tmp_path / "drive", DOCS))

    def found(query: str) -> list[str]:
        hits = knowledge.service.search(local_operator(), query, ["docs"], 5, Mode.KEYWORD)
        return [Path(h.source).name for h in hits]

    assert found("the agreement") == ["acme.md"]  # "the" in both does not bring leave.txt
    assert found("what is the") == []
    assert found("holiday") == ["leave.txt"]


def test_fusion_puts_the_vector_list_first_when_the_lists_disagree() -> None:
    # equal weights would tie these and order by id; the benchmark chose the keyword list at
    # half weight (knowledge_bench: hybrid MRR 0.881 vs 0.850 with plain RRF)
    assert [i for i, _ in fuse([7], [3])] == [7, 3]
    assert [i for i, _ in fuse([7, 3], [3])] == [3, 7]  # in both lists beats one list alone


def _names(knowledge: Knowledge, chunk_ids: list[int]) -> list[str]:
    with knowledge.db.read() as session:
        rows = session.execute(
            select(KnowledgeChunk.id, KnowledgeDocument.source)
            .join(KnowledgeDocument, KnowledgeDocument.id == KnowledgeChunk.document_id)
            .where(KnowledgeChunk.id.in_(chunk_ids))
        )
        source = {row.id: row.source for row in rows}
    return [Path(source[i]).name for i in chunk_ids]


def test_hybrid_matches_the_words_rare_among_what_the_reader_may_read(
    knowledge: Knowledge, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keywords, "COMMON_AT", 3)  # 2,000 at 100k chunks, scaled down
    knowledge.people(lambda d: (d.add_group("staff"), d.add_group("finance")))
    knowledge.service.create(ACTOR, "docs", "staff")
    knowledge.service.create(ACTOR, "books", "finance")
    invoices = {f"invoice{i}.txt": f"Invoice number {i} was paid in March." for i in range(4)}
    knowledge.service.add(ACTOR, "docs", write(tmp_path / "docs", {
        **invoices, "ledger.txt": "The ledger closes at the end of each quarter."
    }))  # fmt: skip
    ledgers = {f"book{i}.txt": f"Ledger page {i} of the general books." for i in range(6)}
    knowledge.service.add(ACTOR, "books", write(tmp_path / "books", ledgers))
    docs = select(KnowledgeCollection.id).where(KnowledgeCollection.name == "docs")

    with knowledge.db.read() as session:
        rare = keyword_candidates(session, docs, "invoice ledger", 50)
        every = keyword_candidates(session, docs, "invoice ledger", 50, rare_only=False)
    # "invoice" is in 4 of docs' chunks (common at 3): only "ledger" (1 there) matches. The
    # 6 ledgers of "books", which this reader may not read, do not make it common.
    assert _names(knowledge, rare) == ["ledger.txt"]
    assert sorted(_names(knowledge, every)) == sorted([*invoices, "ledger.txt"])


def test_a_hybrid_search_finds_the_same_with_its_keyword_side_on_another_thread(
    knowledge: Knowledge, tmp_path: Path
) -> None:
    knowledge.people(lambda d: d.add_group("staff"))
    knowledge.service.create(ACTOR, "docs", "staff")
    knowledge.service.add(ACTOR, "docs", write(tmp_path / "drive", DOCS))
    docs = select(KnowledgeCollection.id).where(KnowledgeCollection.name == "docs")
    query = "how much notice to end the agreement"
    vector = knowledge.service._embedder().embed([query])[0]
    with knowledge.db.read() as session:
        alone = search(session, docs, query, vector, 5, Mode.HYBRID)
        apart = search(session, docs, query, vector, 5, Mode.HYBRID, knowledge.db.read)
    assert Path(alone[0].source).name == "acme.md"
    assert apart == alone


def _filler(n: int) -> str:
    return " ".join(f"word{i}" for i in range(n))


def test_what_a_reader_may_not_read_never_changes_the_order_of_its_keyword_results(
    knowledge: Knowledge, tmp_path: Path
) -> None:
    knowledge.people(lambda d: (d.add_group("staff"), d.add_group("finance")))
    knowledge.people(lambda d: d.add_user("sam", groups=["staff"]))
    knowledge.service.create(ACTOR, "docs", "staff")
    knowledge.service.create(ACTOR, "books", "finance")
    # of the same length: x says "alpha" five times and "beta" once, y "alpha" once and "beta"
    # twice; the other four say neither, so both words are equally rare among "docs"
    knowledge.service.add(ACTOR, "docs", write(tmp_path / "docs", {
        "x.txt": f"alpha alpha alpha alpha alpha beta {_filler(6)}",
        "y.txt": f"alpha beta beta {_filler(9)}",
        **{f"other{i}.txt": f"other {_filler(11)}" for i in range(4)},
    }))  # fmt: skip
    sam = knowledge.key_principal("sam")

    def found() -> list[str]:
        hits = knowledge.service.search(sam, "alpha beta", top_k=5, mode=Mode.KEYWORD)
        return [Path(h.source).name for h in hits]

    before = found()
    assert before == ["x.txt", "y.txt"]
    # "books", which sam may not read, says "alpha" in every document: counted with them,
    # "alpha" would be common and worth nothing, and y (more "beta") would rank first
    many = {f"book{i}.txt": f"alpha ledger {_filler(10)}" for i in range(30)}
    knowledge.service.add(ACTOR, "books", write(tmp_path / "books", many))
    assert found() == before
    everyone = knowledge.service.search(local_operator(), "alpha beta", ["books"], 5, Mode.KEYWORD)
    assert len(everyone) == 5  # the books do match, for whoever may read them


def _fulltext_tables(knowledge: Knowledge) -> set[str]:
    """SQLite: the names of the collections' FTS5 tables (shadow tables left out)."""
    with knowledge.db.read() as session:
        names = session.scalars(text("SELECT name FROM sqlite_master WHERE type = 'table'"))
        return {n for n in names if re.fullmatch(r"knowledge_fts_\d+", n)}


def test_a_deleted_collection_takes_its_full_text_with_it(
    knowledge: Knowledge, tmp_path: Path
) -> None:
    knowledge.people(lambda d: d.add_group("staff"))
    knowledge.service.create(ACTOR, "keep", "staff")
    knowledge.service.add(ACTOR, "keep", write(tmp_path / "keep", {"a.txt": "Kept alpha notes."}))
    knowledge.service.create(ACTOR, "old", "staff")
    knowledge.service.add(ACTOR, "old", write(tmp_path / "old", DOCS))
    sqlite = knowledge.db.dialect == "sqlite"
    if sqlite:
        assert len(_fulltext_tables(knowledge)) == 2
    knowledge.service.remove(ACTOR, "old")
    if sqlite:
        assert len(_fulltext_tables(knowledge)) == 1  # "keep"'s

    # the new collection may get the deleted one's id (SQLite reuses the highest)
    knowledge.service.create(ACTOR, "new", "staff")
    knowledge.service.add(ACTOR, "new", write(tmp_path / "new", {"b.txt": "Fresh alpha memo."}))

    def found(query: str, names: list[str] | None = None) -> list[str]:
        hits = knowledge.service.search(local_operator(), query, names, 5, Mode.KEYWORD)
        return sorted(Path(h.source).name for h in hits)

    assert found("agreement holiday") == []  # nothing of "old" is left to find
    assert found("alpha") == ["a.txt", "b.txt"]
    assert found("alpha", ["new"]) == ["b.txt"]
    if sqlite:
        assert len(_fulltext_tables(knowledge)) == 2


OLD_CHUNKS = {  # chunk id -> (collection id, text), written as revision 0007 stored them
    1: (1, "The warranty covers the pump for two years."),
    2: (1, "Invoices are due within thirty days."),
    3: (2, "The pump warranty of the secret supplier."),
}


def _write_0007(db: Database) -> None:
    """Two collections, their documents and chunks, and their full-text rows in knowledge_fts."""
    with db.write() as session:
        for collection_id in (1, 2):
            session.execute(
                text("INSERT INTO knowledge_collections (id, name, created_at) VALUES (:i, :n, 0)"),
                {"i": collection_id, "n": f"c{collection_id}"},
            )
        for chunk_id, (collection_id, body) in OLD_CHUNKS.items():
            values = {"i": chunk_id, "c": collection_id, "t": body}
            session.execute(
                text(
                    "INSERT INTO knowledge_documents (id, collection_id, source, content_hash, "
                    "title, size, status, chunk_count, updated_at) "
                    "VALUES (:i, :c, 'doc' || :i, '', '', 0, 'indexed', 1, 0)"
                ),
                values,
            )
            session.execute(
                text(
                    "INSERT INTO knowledge_chunks (id, document_id, collection_id, ordinal, text, "
                    "location, token_count) VALUES (:i, :i, :c, 0, :t, '{}', 8)"
                ),
                values,
            )
            fulltext = (
                "INSERT INTO knowledge_fts (rowid, text) VALUES (:i, :t)"
                if db.dialect == "sqlite"
                else "INSERT INTO knowledge_fts (chunk_id, collection_id, tsv) "
                "VALUES (:i, :c, to_tsvector('english', :t))"
            )
            session.execute(text(fulltext), values)


def test_a_store_indexed_before_fulltext_per_collection_is_found_after_the_migration(
    db_url: str,
) -> None:
    db = Database(db_url)
    upgrade(db.engine, "0007")
    _write_0007(db)
    db.migrate()
    first = select(KnowledgeCollection.id).where(KnowledgeCollection.id == 1)
    with db.read() as session:
        assert keyword_candidates(session, first, "pump warranty", 5, rare_only=False) == [1]
        assert keyword_candidates(session, first, "invoices", 5) == [2]
        everything = select(KnowledgeCollection.id)
        assert sorted(keyword_candidates(session, everything, "warranty", 5)) == [1, 3]
        if db.dialect == "sqlite":
            names = session.scalars(text("SELECT name FROM sqlite_master WHERE type = 'table'"))
            fts = {n for n in names if n.startswith("knowledge_fts")}
            assert "knowledge_fts" not in fts and {"knowledge_fts_1", "knowledge_fts_2"} <= fts
    if db.dialect == "sqlite":  # and back: the one table again, with every row
        command.downgrade(alembic_config(db.engine), "0007")
        with db.read() as session:
            query = text("SELECT rowid FROM knowledge_fts WHERE knowledge_fts MATCH 'warranty'")
            assert sorted(session.scalars(query)) == [1, 3]
            tables = session.scalars(text("SELECT name FROM sqlite_master WHERE type = 'table'"))
            assert not any(re.fullmatch(r"knowledge_fts_\d+", n) for n in tables)
    db.close()
