"""A folder goes in, search finds the right document, and re-syncs track the folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import func, select

from inhouse.auth.authenticate import local_operator
from inhouse.embeddings.minilm import MiniLMEmbedder
from inhouse.errors import InvalidRequest
from inhouse.knowledge import pgvector
from inhouse.knowledge.access import readable_ids
from inhouse.knowledge.folders import resolve_inside
from inhouse.knowledge.index import VEC_LOADED, sql_vectors
from inhouse.knowledge.ingest import Outcome
from inhouse.knowledge.search import Mode, vector_candidates
from inhouse.store.db import Database
from inhouse.store.tables import AuditEntry, KnowledgeChunk
from tests.knowledge.conftest import ACTOR, Knowledge, build, write
from tests.knowledge.files import tiny_pdf

DOCS = {
    "contracts/acme.md": "# Acme supply contract\n\n## Termination\n\nEither party may "
    "terminate this agreement with ninety days written notice.\n\n## Payment\n\n"
    "Invoices are payable within 30 days.\n",
    "hr/leave.txt": "Employees receive twenty-five days of paid holiday each year.\n\n"
    "Sick leave requires a doctor's note after three days.",
    "crm/accounts.csv": "account,notes\nGlobex,prefers phone calls\nInitech,renewal due in March\n",
}


def added(k: Knowledge, folder: Path) -> dict[Outcome, int]:
    return k.service.add(ACTOR, "docs", folder).counts


def top(k: Knowledge, query: str, mode: Mode = Mode.HYBRID) -> str:
    hits = k.service.search(local_operator(), query, ["docs"], top_k=3, mode=mode)
    return Path(hits[0].source).name


@pytest.fixture
def docs(knowledge: Knowledge, tmp_path: Path) -> Path:
    knowledge.people(lambda d: d.add_group("staff"))
    knowledge.service.create(ACTOR, "docs", "staff")
    return write(tmp_path / "drive", DOCS)


def test_search_finds_the_right_document_and_where_in_it(knowledge: Knowledge, docs: Path) -> None:
    assert added(knowledge, docs)[Outcome.ADDED] == 3
    hits = knowledge.service.search(
        local_operator(), "how much notice to end the contract", ["docs"]
    )
    assert Path(hits[0].source).name == "acme.md"
    assert hits[0].location["headings"] == ["Acme supply contract", "Termination"]
    assert hits[0].collection == "docs"
    assert top(knowledge, "vacation days per year") == "leave.txt"
    assert top(knowledge, "Initech renewal", Mode.KEYWORD) == "accounts.csv"
    assert top(knowledge, "when must invoices be paid", Mode.VECTOR) == "acme.md"


def test_resync_skips_unchanged_replaces_changed_and_drops_deleted(
    knowledge: Knowledge, docs: Path
) -> None:
    added(knowledge, docs)
    with knowledge.db.read() as session:
        audited = session.scalar(select(func.count()).select_from(AuditEntry))
    again = added(knowledge, docs)
    assert again[Outcome.UNCHANGED] == 3 and again[Outcome.ADDED] == again[Outcome.UPDATED] == 0
    with knowledge.db.read() as session:  # a no-op writes nothing, not even to the audit trail
        assert session.scalar(select(func.count()).select_from(AuditEntry)) == audited

    (docs / "hr/leave.txt").write_text("Parental leave lasts sixteen weeks at full pay.")
    (docs / "crm/accounts.csv").unlink()
    report = knowledge.service.add(ACTOR, "docs", docs)
    assert report.counts[Outcome.UPDATED] == 1 and report.removed == 1
    assert top(knowledge, "parental leave weeks") == "leave.txt"
    hits = knowledge.service.search(local_operator(), "twenty-five days holiday", ["docs"], 10)
    assert all("twenty-five" not in h.text for h in hits)
    assert all("Initech" not in h.text for h in hits)
    with knowledge.db.read() as session:
        chunks = session.scalar(select(func.count()).select_from(KnowledgeChunk))
        vectors = pgvector.count(session)
    assert chunks == vectors == len(knowledge.service.documents("docs")) + 1  # acme has 2


def test_bad_files_fail_alone_with_their_reason(
    knowledge: Knowledge, docs: Path, tmp_path: Path
) -> None:
    write(
        docs,
        {
            "broken.pdf": b"%PDF-1.4 not a pdf at all",
            "empty.md": b"",
            "good.pdf": tiny_pdf(["Quarterly revenue rose by eight percent"]),
        },
    )
    outside = write(tmp_path / "secret", {"salaries.txt": "The CEO earns a fortune."})
    os.symlink(outside / "salaries.txt", docs / "link.txt")
    os.symlink(outside, docs / "linked-dir")
    os.close(os.open(bytes(docs) + b"/latin1-caf\xe9.txt", os.O_CREAT | os.O_WRONLY))
    report = knowledge.service.add(ACTOR, "docs", docs)
    reasons = {Path(source).name: reason for source, reason in report.failures}
    assert "not valid UTF-8" in reasons.pop("latin1-caf\\xe9.txt")  # listed, not stored
    assert set(reasons) == {"broken.pdf", "empty.md", "link.txt", "linked-dir"}
    assert "empty" in reasons["empty.md"]
    assert "outside the folder" in reasons["link.txt"] and "outside" in reasons["linked-dir"]
    assert report.counts[Outcome.ADDED] == 4  # the three DOCS and good.pdf
    assert top(knowledge, "revenue growth this quarter") == "good.pdf"
    hits = knowledge.service.search(local_operator(), "CEO earns a fortune", ["docs"], 10)
    assert all("fortune" not in h.text for h in hits)
    failed = {
        Path(d["source"]).name: d["error"]
        for d in knowledge.service.documents("docs")
        if d["status"] == "failed"
    }
    assert failed == reasons


def test_files_over_the_size_limit_are_refused(
    db: Database, tmp_path: Path, embedder: MiniLMEmbedder
) -> None:
    k = build(db, tmp_path / "home", embedder, max_file_mb=0.01)  # 10 KiB
    k.people(lambda d: d.add_group("staff"))
    k.service.create(ACTOR, "docs", "staff")
    folder = write(tmp_path / "drive", {"big.txt": "x " * 20_000, "small.txt": "A small note."})
    report = k.service.add(ACTOR, "docs", folder)
    assert [(Path(s).name, "knowledge.max_file_mb" in r) for s, r in report.failures] == [
        ("big.txt", True)
    ]
    assert report.counts[Outcome.ADDED] == 1


def test_names_that_climb_out_of_the_folder_are_refused(tmp_path: Path) -> None:
    root = write(tmp_path / "drive", {"..notes.md": "a file whose name starts with dots"})
    assert resolve_inside(root, "..notes.md") == (root / "..notes.md").resolve()
    for name in ("../outside.txt", "sub/../../outside.txt", "/etc/passwd"):
        with pytest.raises(InvalidRequest):
            resolve_inside(root, name)


def test_sqlite_vec_and_numpy_rank_alike(
    knowledge: Knowledge, docs: Path, embedder: MiniLMEmbedder
) -> None:
    if knowledge.db.dialect != "sqlite":
        pytest.skip("sqlite-vec is the SQLite path; PostgreSQL ranks in numpy")
    added(knowledge, docs)
    readable = readable_ids(local_operator(), knowledge.settings.knowledge, None)
    query = embedder.embed(["paid holiday"])[0]
    with knowledge.db.read() as session:
        assert sql_vectors(session)  # the extension loads into the store's connection
        in_sql = vector_candidates(session, readable, query, 10)
        session.connection().connection.info[VEC_LOADED] = False
        in_numpy = vector_candidates(session, readable, query, 10)
        del session.connection().connection.info[VEC_LOADED]
    assert in_sql == in_numpy and len(in_sql) == 4
