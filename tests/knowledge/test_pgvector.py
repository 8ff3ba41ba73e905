"""PostgreSQL: vectors ranked by pgvector inside the permission-filtered query, and deletion
that leaves nothing in the server's table files."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, func, insert, make_url, select, text

from inhouse.auth.authenticate import local_operator
from inhouse.embeddings.minilm import MiniLMEmbedder
from inhouse.knowledge import pgvector
from inhouse.knowledge.search import Mode
from inhouse.store.db import Database, open_database
from inhouse.store.tables import KnowledgeChunk, KnowledgeVector
from tests.conftest import POSTGRES_URL, need, postgres_schema, wait_for
from tests.knowledge.conftest import ACTOR, Knowledge, build, write

CANARY = "Quentaro Vilkisham signed the Zephyrinex accord at midnight."
TRACES = (b"quentaro", b"vilkisham", b"zephyrinex")
NOTES = {
    "leave.md": "# Leave\n\nEvery employee has twenty-five days of paid holiday per year.",
    "invoices.md": "# Invoices\n\nInvoices are paid within thirty days of receipt.",
}


def admin_url(database: str | None = None) -> str:
    """The test server's URL (with psycopg), on `database` if named."""
    url = make_url(POSTGRES_URL).set(drivername="postgresql+psycopg")
    return (url.set(database=database) if database else url).render_as_string(False)


@pytest.fixture
def postgres() -> str:
    """The test server's URL."""
    need(bool(POSTGRES_URL), "INHOUSE_TEST_POSTGRES_URL is not set: no PostgreSQL to test on")
    return POSTGRES_URL


@pytest.fixture
def server(postgres: str) -> str:
    """The test server's URL, with pgvector installable (or CI fails: INHOUSE_REQUIRE_ALL)."""
    engine = create_engine(admin_url())
    with engine.connect() as conn:
        found = conn.scalar(text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"))
    engine.dispose()
    need(found is not None, "the test PostgreSQL server has no pgvector extension")
    return POSTGRES_URL


@contextmanager
def opened(url: str, home: Path, embedder: MiniLMEmbedder) -> Iterator[Knowledge]:
    db = open_database(url)
    try:
        k = build(db, home, embedder)
        k.people(lambda d: d.add_group("staff"))
        yield k
    finally:
        db.close()


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    """Every SQL statement the store sends while the block runs."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def stored(k: Knowledge) -> tuple[int, int, int]:
    """(chunks, float32 blobs, pgvector rows) in the store."""
    with k.db.read() as session:
        chunks = session.scalar(select(func.count()).select_from(KnowledgeChunk)) or 0
        blobs = session.scalar(select(func.count()).select_from(KnowledgeVector)) or 0
        return chunks, blobs, pgvector.count(session) - blobs


def test_vectors_live_in_pgvector_and_are_ranked_inside_the_permission_query(
    server: str, tmp_path: Path, embedder: MiniLMEmbedder
) -> None:
    with postgres_schema() as url, opened(url, tmp_path / "home", embedder) as pg:
        ranked_in_pgvector(pg, tmp_path)


def ranked_in_pgvector(pg: Knowledge, tmp_path: Path) -> None:
    pg.service.create(ACTOR, "hr", "staff")
    pg.service.create(ACTOR, "secret", "staff")
    pg.service.add(ACTOR, "hr", write(tmp_path / "hr", NOTES))
    pg.service.add(ACTOR, "secret", write(tmp_path / "s", {"x.md": "Paid holiday is secret."}))
    with pg.db.read() as session:
        assert pgvector.in_use(session) is not None
    assert stored(pg) == (3, 0, 3)  # every vector in pgvector, none left as a blob

    with statements(pg.db) as sent:
        hits = pg.service.search(local_operator(), "paid holiday", ["hr"], 5, Mode.VECTOR)
    assert [Path(h.source).name for h in hits] == ["leave.md", "invoices.md"]
    ranked = [s for s in sent if "<=>" in s]
    assert len(ranked) == 1 and "knowledge_embeddings" in ranked[0]
    assert "knowledge_collections" in ranked[0]  # the permission condition is in the query
    assert not any("knowledge_vectors" in s for s in sent)  # nothing fetched for numpy


@contextmanager
def new_database(owner: str = "postgres") -> Iterator[str]:
    """A new, empty database on the test server (no extension in it; and no other session's
    snapshot keeps its deleted rows from VACUUM, as one in a shared database could)."""
    name = "t_" + uuid.uuid4().hex[:16]
    admin = create_engine(admin_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name} OWNER {owner}"))
    try:
        yield admin_url(name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()


@pytest.mark.parametrize("table_left", [False, True], ids=["first-use", "racing-writer"])
def test_first_use_enables_pgvector_and_moves_older_blobs(
    server: str, tmp_path: Path, embedder: MiniLMEmbedder, table_left: bool
) -> None:
    with new_database() as url, opened(url, tmp_path / "home", embedder) as k:
        k.service.create(ACTOR, "hr", "staff")
        k.service.add(ACTOR, "hr", write(tmp_path / "a", {"leave.md": NOTES["leave.md"]}))
        assert stored(k) == (1, 0, 1)
        # the store as a version without pgvector left it, or (the table left) as a writer
        # that wrote blobs while another created the table would
        as_blobs(k, embedder, table_left)
        assert stored(k) == (1, 1, 0)
        k.service.add(ACTOR, "hr", write(tmp_path / "b", {"invoices.md": NOTES["invoices.md"]}))
        assert stored(k) == (2, 0, 2)
        hits = k.service.search(local_operator(), "paid holiday", None, 5, Mode.VECTOR)
        assert Path(hits[0].source).name == "leave.md"


def test_a_role_that_may_not_enable_pgvector_keeps_blobs_ranked_in_numpy(
    server: str, tmp_path: Path, embedder: MiniLMEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    role = "r_" + uuid.uuid4().hex[:16]  # owns its database, but is no superuser
    admin = create_engine(admin_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN"))
    try:
        with new_database(owner=role) as url:
            as_role = make_url(url).set(username=role).render_as_string(False)
            with opened(as_role, tmp_path / "home", embedder) as k:
                k.service.create(ACTOR, "hr", "staff")
                k.service.add(ACTOR, "hr", write(tmp_path / "hr", NOTES))
                assert stored(k) == (2, 2, 0)
                hits = k.service.search(local_operator(), "paid holiday", None, 5, Mode.VECTOR)
                assert Path(hits[0].source).name == "leave.md"
        assert "pgvector is installed but cannot be enabled" in caplog.text
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP ROLE {role}"))
        admin.dispose()


def as_blobs(k: Knowledge, embedder: MiniLMEmbedder, table_left: bool) -> None:
    """Empty (or drop) the pgvector table; store each chunk's vector as a float32 blob."""
    with k.db.write() as session:
        verb = "DELETE FROM" if table_left else "DROP TABLE"
        session.execute(text(f"{verb} {pgvector.TABLE}"))
        chunks = session.execute(select(KnowledgeChunk)).scalars().all()
        vectors = embedder.embed([c.text for c in chunks])
        rows = [
            {"chunk_id": c.id, "collection_id": c.collection_id, "embedding": v.tobytes()}
            for c, v in zip(chunks, vectors, strict=True)
        ]
        session.execute(insert(KnowledgeVector), rows)


def file_traces(k: Knowledge) -> list[str]:
    """Canary words in the server's files of this schema's tables, indexes and TOAST."""
    schema = "current_schema()::regnamespace"
    relations = text(
        "SELECT c.oid::regclass::text, pg_read_binary_file(pg_relation_filepath(c.oid)) "
        "FROM pg_class c LEFT JOIN pg_index i ON i.indexrelid = c.oid "
        f"WHERE c.relnamespace = {schema} OR c.oid IN (SELECT reltoastrelid FROM pg_class "
        f"WHERE relnamespace = {schema}) OR i.indrelid IN (SELECT reltoastrelid FROM pg_class "
        f"WHERE relnamespace = {schema})"
    )
    with k.db.write() as session:
        session.execute(text("CHECKPOINT"))  # so the files hold what the buffers do
        rows = session.execute(relations).all()
    return [f"{name}: {t!r}" for name, data in rows for t in TRACES if t in (data or b"").lower()]


def test_deletion_leaves_no_trace_in_the_servers_files(
    postgres: str, tmp_path: Path, embedder: MiniLMEmbedder
) -> None:
    with new_database() as url, opened(url, tmp_path / "home", embedder) as pg:
        erased_from_files(pg, tmp_path)


def erased(k: Knowledge) -> bool:
    """No canary word in the files; if there is one, the store rewrites its tables again."""
    if file_traces(k) == []:
        return True
    pgvector.vacuum(k.db)
    return False


def erased_from_files(pg: Knowledge, tmp_path: Path) -> None:
    with pg.db.read() as session:
        superuser = session.scalar(text("SELECT rolsuper FROM pg_roles WHERE rolname = user"))
    need(bool(superuser), "reading the server's files needs a superuser")
    pg.service.create(ACTOR, "contracts", "staff")
    source = write(tmp_path / "drive", {"secret.md": f"# Accord\n\n{CANARY}", **NOTES})
    pg.service.add(ACTOR, "contracts", source)
    assert file_traces(pg)  # the check sees the canary while it is there
    pg.service.remove_document(ACTOR, "contracts", str(source / "secret.md"))
    # VACUUM FULL keeps rows an older transaction of the server may still see (on a shared
    # test server another run's): once none can, a rewrite leaves nothing
    wait_for(lambda: erased(pg), timeout=60)
    chunks, blobs, rows = stored(pg)
    assert chunks == blobs + rows == 2  # the other documents keep their vectors
    pg.service.remove(ACTOR, "contracts")
    assert stored(pg) == (0, 0, 0)
