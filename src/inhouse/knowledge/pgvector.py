"""pgvector on PostgreSQL: chunk vectors in a `halfvec` column, ranked by `<=>` inside SQL.

Where the database has the `vector` extension (or lets the store create it), the first write
of chunks creates `knowledge_embeddings` in the store's schema, moves any float32 blobs there,
and from then on every vector lives only there. A search ranks the readable collections'
vectors in one query, with the permission condition in its WHERE clause. Without the
extension nothing here applies: the index keeps float32 blobs and ranks them in numpy.

Vectors are stored as half precision (`halfvec`, pgvector >= 0.7; `vector` on older ones):
an exact scan reads half the bytes, about twice as fast at 100k chunks, and a unit vector's
cosine loses ~1e-3 (BENCHMARKS.md). The ranking is exact, with no ANN index: its top-k is the
true top-k of the readable rows, never shortened or reordered by rows the reader may not see.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sqlalchemy import (
    Integer,
    Select,
    bindparam,
    column,
    delete,
    func,
    select,
    table,
    text,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from inhouse.store.db import Database
from inhouse.store.tables import KnowledgeVector

log = logging.getLogger(__name__)

TABLE = "knowledge_embeddings"
EMBEDDINGS = table(TABLE, column("chunk_id", Integer), column("collection_id", Integer))
# serializes the first-use DDL of concurrent writers (a fixed, arbitrary advisory lock key)
DDL_LOCK = 0x1A2B_0C0D
EXTENSION_SCHEMA = text(
    "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
    "WHERE e.extname = 'vector'"
)
# the embedding column's type and the schema it (and the extension's operators) live in
COLUMN_TYPE = text(
    "SELECT n.nspname, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
    "JOIN pg_namespace n ON n.oid = t.typnamespace "
    "WHERE a.attrelid = to_regclass(:table) AND a.attname = 'embedding'"
)
MOVE_BATCH = 1000
DENIED = "inhouse_pgvector_denied"  # pooled connection info: CREATE EXTENSION was refused


@dataclass(frozen=True)
class Vectors:
    """Where TABLE's vectors are: the extension's schema (quoted) and the column's type."""

    schema: str
    type: str

    @property
    def cast(self) -> str:
        return f"{self.schema}.{self.type}"

    @property
    def distance(self) -> str:
        return f"OPERATOR({self.schema}.<=>)"


def in_use(session: Session) -> Vectors | None:
    """Where this store keeps its vectors in TABLE, or None (not PostgreSQL, or blobs).

    Asked anew in every transaction (one catalog query): a cached answer could outlive a
    rolled-back first use, or miss another writer's."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    row = session.execute(COLUMN_TYPE, {"table": TABLE}).first()
    return None if row is None else Vectors(_quote(session, row[0]), row[1])


def prepare(session: Session, dimensions: int) -> Vectors | None:
    """Ready TABLE for a write (on first use: the extension, the table, the moved blobs);
    where the vectors go, or None where pgvector is unavailable or not allowed."""
    found = in_use(session)
    if found is not None:
        _move_blobs(session, found)  # ones a writer racing the first use wrote (rare, cheap)
        return found
    if session.get_bind().dialect.name != "postgresql":
        return None
    available = "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"
    if session.scalar(text(available)) is None:
        return None
    session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": DDL_LOCK})
    schema = session.scalar(EXTENSION_SCHEMA) or _create_extension(session)
    if schema is None:
        return None
    quoted = _quote(session, schema)
    half = session.scalar(text("SELECT to_regtype(:t) IS NOT NULL"), {"t": f"{quoted}.halfvec"})
    vectors = Vectors(quoted, "halfvec" if half else "vector")
    session.execute(
        text(
            f"CREATE TABLE IF NOT EXISTS {TABLE} ("
            "chunk_id INTEGER PRIMARY KEY REFERENCES knowledge_chunks (id) ON DELETE CASCADE, "
            f"collection_id INTEGER NOT NULL, embedding {vectors.cast}({int(dimensions)}) NOT NULL)"
        )
    )
    session.execute(
        text(f"CREATE INDEX IF NOT EXISTS {TABLE}_collection ON {TABLE} (collection_id)")
    )
    _move_blobs(session, vectors)
    return vectors


def _create_extension(session: Session) -> str | None:
    info = session.connection().connection.info
    if DENIED in info:  # asked on this connection already: once is enough for the log
        return None
    try:
        with session.begin_nested():
            session.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
    except DBAPIError as exc:  # e.g. a role without the privilege: numpy ranks instead
        log.warning("pgvector is installed but cannot be enabled (%s); vectors stay blobs", exc)
        info[DENIED] = True
        return None
    schema: str | None = session.scalar(EXTENSION_SCHEMA)
    return schema


def _move_blobs(session: Session, vectors: Vectors) -> None:
    """Move vectors written before pgvector was enabled from their blobs into TABLE."""
    while True:
        rows = session.execute(
            select(
                KnowledgeVector.chunk_id, KnowledgeVector.collection_id, KnowledgeVector.embedding
            ).limit(MOVE_BATCH)
        ).all()
        if not rows:
            return
        blobs = np.frombuffer(b"".join(r.embedding for r in rows), dtype="<f4")
        store(
            session,
            vectors,
            [r.chunk_id for r in rows],
            [r.collection_id for r in rows],
            blobs.reshape(len(rows), -1),
        )
        ids = [r.chunk_id for r in rows]
        session.execute(delete(KnowledgeVector).where(KnowledgeVector.chunk_id.in_(ids)))


def store(
    session: Session,
    where: Vectors,
    chunk_ids: Sequence[int],
    collection_ids: Sequence[int],
    vectors: npt.NDArray[np.float32],
) -> None:
    """Insert one vector per chunk into TABLE."""
    statement = text(
        f"INSERT INTO {TABLE} (chunk_id, collection_id, embedding) "
        f"VALUES (:chunk_id, :collection_id, CAST(:embedding AS {where.cast}))"
    )
    rows = [
        {"chunk_id": i, "collection_id": c, "embedding": literal(v)}
        for i, c, v in zip(chunk_ids, collection_ids, vectors, strict=True)
    ]
    session.execute(statement, rows)


def nearest(
    session: Session,
    where: Vectors,
    readable: Select[int],
    query: npt.NDArray[np.float32],
    limit: int,
) -> list[int]:
    """Chunk ids of the readable collections by cosine distance to `query`, nearest first."""
    distance = column("embedding").op(where.distance)(
        text(f"CAST(:query AS {where.cast})").bindparams(bindparam("query", literal(query)))
    )
    statement = (
        select(EMBEDDINGS.c.chunk_id)
        .select_from(EMBEDDINGS)
        .where(EMBEDDINGS.c.collection_id.in_(readable))
        .order_by(distance, EMBEDDINGS.c.chunk_id)
        .limit(limit)
    )
    return list(session.scalars(statement))


def count(session: Session) -> int:
    """How many chunk vectors the store holds, wherever they live (blobs or TABLE)."""
    blobs = session.scalar(select(func.count()).select_from(KnowledgeVector)) or 0
    if in_use(session) is None:
        return blobs
    return blobs + (session.scalar(select(func.count()).select_from(EMBEDDINGS)) or 0)


def literal(vector: npt.NDArray[np.float32]) -> str:
    """pgvector's text form of a vector: [x1,x2,...]."""
    return "[" + ",".join(repr(float(x)) for x in vector.tolist()) + "]"


def vacuum(db: Database) -> None:
    """After a deleting commit on PostgreSQL: rewrite the knowledge tables (VACUUM FULL).

    A plain VACUUM only marks dead rows' space as free; their bytes stay in the table and
    GIN files until overwritten. Rewriting drops the old files, so no deleted text stays in
    them (the write-ahead log is the server's own, recycled as it is)."""
    if db.dialect != "postgresql":
        return
    tables = ["knowledge_documents", "knowledge_chunks", "knowledge_fts", "knowledge_vectors"]
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        if connection.scalar(text("SELECT to_regclass(:t) IS NOT NULL"), {"t": TABLE}):
            tables.append(TABLE)
        connection.exec_driver_sql(f"VACUUM FULL {', '.join(tables)}")


def _quote(session: Session, name: str) -> str:
    quoted: str = session.get_bind().dialect.identifier_preparer.quote_identifier(name)
    return quoted
