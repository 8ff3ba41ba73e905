"""The index's SQL: chunk, vector and full-text rows written and deleted together.

Full-text rows live, on SQLite, in one FTS5 table per collection, `knowledge_fts_<id>` (rowid
= chunk id, no copy of the text), so that bm25's statistics (row count, average length, each
word's document frequency) are those of that collection alone, and what a reader may not read
never weighs in its ranking; on PostgreSQL in one tsvector table, `knowledge_fts` (ts_rank_cd
uses no statistics of other rows). Vectors are float32 blobs; on SQLite the sqlite-vec
extension (loaded into each connection on first use) computes distances in SQL. On
PostgreSQL with pgvector, vectors live in a pgvector column instead (see pgvector.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import bindparam, delete, insert, select, text
from sqlalchemy.orm import Session

from inhouse.knowledge import pgvector
from inhouse.knowledge.chunking import Chunk
from inhouse.store.db import Database
from inhouse.store.tables import KnowledgeChunk, KnowledgeVector

log = logging.getLogger(__name__)

# no copy of the text (the chunks table holds it); contentless_delete lets a row be deleted by
# rowid; Porter stemming, so "terminated" finds "termination" (as migration 0002 made it)
SQLITE_FTS_OPTIONS = (
    "fts5(text, content='', contentless_delete=1, tokenize='porter unicode61 remove_diacritics 2')"
)
POSTGRES_FTS_INSERT = text(
    "INSERT INTO knowledge_fts (chunk_id, collection_id, tsv) "
    "VALUES (:id, :collection_id, to_tsvector('english', :text))"
)
VEC_LOADED = "inhouse_sqlite_vec"


def is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def sql_vectors(session: Session) -> bool:
    """True when this session's SQLite connection computes vector distances (sqlite-vec);
    loaded once per pooled connection. False on PostgreSQL or if the extension is missing."""
    if not is_sqlite(session):
        return False
    pooled = session.connection().connection
    if VEC_LOADED not in pooled.info:
        pooled.info[VEC_LOADED] = _load_sqlite_vec(pooled.dbapi_connection)
    return bool(pooled.info[VEC_LOADED])


def _load_sqlite_vec(dbapi_connection: Any) -> bool:
    try:
        import sqlite_vec  # type: ignore[import-untyped]

        dbapi_connection.enable_load_extension(True)
        try:
            sqlite_vec.load(dbapi_connection)
        finally:
            dbapi_connection.enable_load_extension(False)
    except Exception as exc:  # a missing or unloadable extension: numpy computes instead
        log.warning("sqlite-vec is unavailable (%s); vector search runs in numpy", exc)
        return False
    return True


def fulltext_table(collection_id: int) -> str:
    """The name of a collection's FTS5 table (SQLite): made from its integer id alone."""
    return f"knowledge_fts_{int(collection_id)}"


def fulltext_tables(session: Session, collection_ids: Iterable[int]) -> dict[int, str]:
    """Collection id -> FTS5 table name, for those of `collection_ids` that have one, by id."""
    wanted = sorted({int(i) for i in collection_ids})
    if not wanted:
        return {}
    query = text("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN :names")
    query = query.bindparams(bindparam("names", expanding=True))
    found = set(session.scalars(query, {"names": [fulltext_table(i) for i in wanted]}))
    return {i: fulltext_table(i) for i in wanted if fulltext_table(i) in found}


def drop_fulltext(session: Session, collection_id: int) -> None:
    """Drop a collection's FTS5 table (SQLite), its freed pages zeroed; no-op on PostgreSQL."""
    if is_sqlite(session):
        session.execute(text("PRAGMA secure_delete = ON"))
        session.execute(text(f"DROP TABLE IF EXISTS {fulltext_table(collection_id)}"))


def sign_bits(vector: npt.NDArray[np.float32]) -> bytes:
    """One bit per dimension, set where the component is positive (the coarse search key)."""
    return np.packbits(vector > 0).tobytes()


def write_chunks(
    session: Session,
    document_id: int,
    collection_id: int,
    chunks: Sequence[Chunk],
    vectors: npt.NDArray[np.float32],
) -> None:
    """Insert the chunks of one document with their vectors and full-text rows."""
    if not chunks:
        return
    rows = [
        {
            "document_id": document_id,
            "collection_id": collection_id,
            "ordinal": i,
            "text": c.text,
            "location": c.location,
            "token_count": c.token_count,
        }
        for i, c in enumerate(chunks)
    ]
    statement = insert(KnowledgeChunk).returning(KnowledgeChunk.id, sort_by_parameter_order=True)
    ids = list(session.scalars(statement, rows))
    in_pgvector = pgvector.prepare(session, vectors.shape[1])
    if in_pgvector is not None:
        pgvector.store(session, in_pgvector, ids, [collection_id] * len(ids), vectors)
    else:
        vector_rows = [
            {
                "chunk_id": i,
                "collection_id": collection_id,
                "embedding": v.astype("<f4").tobytes(),
                "bits": sign_bits(v),
            }
            for i, v in zip(ids, vectors, strict=True)
        ]
        session.execute(insert(KnowledgeVector), vector_rows)
    fts_rows = [
        {"id": i, "collection_id": collection_id, "text": c.text}
        for i, c in zip(ids, chunks, strict=True)
    ]
    fts = POSTGRES_FTS_INSERT
    if is_sqlite(session):
        table = fulltext_table(collection_id)
        session.execute(
            text(f"CREATE VIRTUAL TABLE IF NOT EXISTS {table} USING {SQLITE_FTS_OPTIONS}")
        )
        fts = text(f"INSERT INTO {table} (rowid, text) VALUES (:id, :text)")
    session.execute(fts, fts_rows)


def delete_chunks(session: Session, *, document_ids: Sequence[int]) -> None:
    """Delete the chunks of these documents, their vectors and their full-text rows."""
    if not document_ids:
        return
    chunk_ids = select(KnowledgeChunk.id).where(KnowledgeChunk.document_id.in_(document_ids))
    if is_sqlite(session):
        # zero the pages these rows free, so the file keeps no copy of them
        session.execute(text("PRAGMA secure_delete = ON"))
        _delete_fulltext(session, document_ids)
    session.execute(delete(KnowledgeVector).where(KnowledgeVector.chunk_id.in_(chunk_ids)))
    session.execute(delete(KnowledgeChunk).where(KnowledgeChunk.document_id.in_(document_ids)))


def _delete_fulltext(session: Session, document_ids: Sequence[int]) -> None:
    """FTS5 has no foreign keys: the chunks' rows go first, from their collections' tables."""
    rows = session.execute(
        select(KnowledgeChunk.collection_id, KnowledgeChunk.id).where(
            KnowledgeChunk.document_id.in_(document_ids)
        )
    ).all()
    by_collection: dict[int, list[int]] = {}
    for collection_id, chunk_id in rows:
        by_collection.setdefault(collection_id, []).append(chunk_id)
    # a dropped table (its collection being deleted) has no rows left to delete
    for collection_id, table in fulltext_tables(session, by_collection).items():
        ids = by_collection[collection_id]
        for start in range(0, len(ids), 500):
            batch = ",".join(str(int(i)) for i in ids[start : start + 500])
            session.execute(text(f"DELETE FROM {table} WHERE rowid IN ({batch})"))


def merge_fulltext(session: Session, collection_ids: Iterable[int]) -> None:
    """After deletions (SQLite): merge the FTS5 segments of these collections' tables, so none
    keeps a deleted term."""
    if is_sqlite(session):
        for table in fulltext_tables(session, collection_ids).values():
            session.execute(text(f"INSERT INTO {table} ({table}) VALUES ('optimize')"))


def flush_log(db: Database) -> None:
    """After a deleting commit on SQLite: copy the WAL into the database and truncate it, so
    no old page image of deleted rows stays in the -wal file (best effort: readers may hold it).
    On PostgreSQL: rewrite the knowledge tables (VACUUM FULL), see pgvector.vacuum."""
    if db.dialect != "sqlite":
        pgvector.vacuum(db)
        return
    with db.engine.connect() as connection:
        connection.connection.dbapi_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[union-attr]
