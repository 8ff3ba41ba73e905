"""kill -9 in the middle of an ingestion, then a re-run: one copy of each document, no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from inhouse.knowledge import pgvector
from inhouse.knowledge.index import fulltext_tables, is_sqlite
from inhouse.store.tables import KnowledgeChunk, KnowledgeCollection, KnowledgeDocument
from tests.knowledge.conftest import ACTOR, Knowledge, write

FILES = 40


def counts(k: Knowledge) -> dict[str, int]:
    """Rows of each index table, distinct sources, and the chunks the documents claim."""
    queries = {
        "documents": select(func.count()).select_from(KnowledgeDocument),
        "sources": select(func.count(func.distinct(KnowledgeDocument.source))),
        "claimed": select(func.coalesce(func.sum(KnowledgeDocument.chunk_count), 0)),
        "chunks": select(func.count()).select_from(KnowledgeChunk),
    }
    with k.db.read() as session:
        found = {name: int(session.scalar(query) or 0) for name, query in queries.items()}
        return found | {"vectors": pgvector.count(session), "fulltext": fulltext_rows(session)}


def fulltext_rows(session: Session) -> int:
    """Rows of the full-text index: PostgreSQL's one table, or SQLite's table per collection."""
    if not is_sqlite(session):
        return int(session.scalar(text("SELECT count(*) FROM knowledge_fts")) or 0)
    tables = fulltext_tables(session, session.scalars(select(KnowledgeCollection.id)))
    return sum(int(session.scalar(text(f"SELECT count(*) FROM {t}")) or 0) for t in tables.values())


def test_a_killed_ingestion_resumes_without_duplicates_or_orphans(
    knowledge: Knowledge, tmp_path: Path
) -> None:
    knowledge.people(lambda d: d.add_group("staff"))
    knowledge.service.create(ACTOR, "docs", "staff")
    notes = {f"note{n:03}.md": f"# Note {n}\n\nThe note about topic {n}." for n in range(FILES)}
    folder = write(tmp_path / "drive", notes)
    env = {**os.environ, "INHOUSE_STORE__URL": knowledge.db.url, "INHOUSE_EMBEDDINGS__THREADS": "1"}
    command = [sys.executable, "-m", "inhouse", "knowledge", "add", "docs", str(folder)]
    command += ["--home", str(knowledge.home)]
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while (
        counts(knowledge)["documents"] < 3 and time.monotonic() < deadline and child.poll() is None
    ):
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert 3 <= counts(knowledge)["documents"] < FILES  # killed in the middle

    knowledge.service.add(ACTOR, "docs", folder)
    after = counts(knowledge)
    assert after["documents"] == after["sources"] == FILES
    assert after["chunks"] == after["vectors"] == after["fulltext"] == after["claimed"] == FILES
