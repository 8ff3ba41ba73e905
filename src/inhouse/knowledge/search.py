"""Hybrid retrieval: vector top-k and keyword top-k fused by weighted reciprocal rank fusion.

Both candidate queries carry the principal's readable collections in their WHERE clause, so a
chunk the caller may not read is never ranked, counted or returned.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from inhouse.knowledge import pgvector
from inhouse.knowledge.index import is_sqlite, sign_bits, sql_vectors
from inhouse.knowledge.keywords import keyword_candidates
from inhouse.store.tables import (
    KnowledgeChunk,
    KnowledgeCollection,
    KnowledgeDocument,
    KnowledgeVector,
)

# Chosen by benchmarks/knowledge_bench.py's retrieval evaluation (42 paraphrased questions on
# stdlib docs): Cormack et al.'s k = 60 with equal weights scored recall@5 0.952 / MRR 0.850,
# below vector-only's MRR 0.878; k = 10 with the keyword list at half weight scored 0.976 / 0.881,
# above both vector-only and keyword-only (0.881 / 0.751).
RRF_K = 10
KEYWORD_WEIGHT = 0.5
# The vector side first ranks the readable chunks by the Hamming distance of their sign bits
# (48 bytes each, read from a covering index instead of 1.5 kB float32 blobs), then ranks the
# COARSE_FACTOR x limit nearest by exact L2. Measured at 100k chunks: 146 -> 18 ms, with 0.975
# to 1.0 of the exact top 20 kept (BENCHMARKS.md).
COARSE_FACTOR = 8


class Mode(enum.StrEnum):
    HYBRID = "hybrid"
    VECTOR = "vector"
    KEYWORD = "keyword"


@dataclass(frozen=True)
class Hit:
    collection: str
    document_id: int
    source: str
    title: str
    location: dict[str, Any]
    text: str
    score: float  # the fused reciprocal-rank score; higher is better
    vector_rank: int | None  # 1-based rank in each candidate list, None if absent from it
    keyword_rank: int | None


def vector_candidates(
    session: Session, readable: Select[int], query: npt.NDArray[np.float32], limit: int
) -> list[int]:
    """Chunk ids by cosine similarity to `query` (unit length), best first."""
    in_pgvector = pgvector.in_use(session)
    if in_pgvector is not None:
        return pgvector.nearest(session, in_pgvector, readable, query, limit)
    where = KnowledgeVector.collection_id.in_(readable)
    if sql_vectors(session):
        return _two_stage(session, where, query, limit)
    rows = session.execute(
        select(KnowledgeVector.chunk_id, KnowledgeVector.embedding).where(where)
    ).all()
    if not rows:
        return []
    matrix = np.frombuffer(b"".join(r.embedding for r in rows), dtype="<f4")
    scores = matrix.reshape(len(rows), -1) @ query
    best = np.argsort(-scores, kind="stable")[:limit]
    return [rows[i].chunk_id for i in best]


def _two_stage(
    session: Session, where: Any, query: npt.NDArray[np.float32], limit: int
) -> list[int]:
    """sqlite-vec: Hamming distance of sign bits for a shortlist, then exact L2 within it (on
    unit vectors L2 orders exactly as cosine does, and sqlite-vec computes it faster)."""
    coarse = func.vec_distance_hamming(
        func.vec_bit(KnowledgeVector.bits), func.vec_bit(sign_bits(query))
    )
    shortlist = (
        select(KnowledgeVector.chunk_id)
        .where(where)
        .order_by(coarse)
        .limit(COARSE_FACTOR * limit)
        .scalar_subquery()
    )
    distance = func.vec_distance_l2(KnowledgeVector.embedding, query.astype("<f4").tobytes())
    statement = (
        select(KnowledgeVector.chunk_id)
        .where(KnowledgeVector.chunk_id.in_(shortlist))
        .order_by(distance)
        .limit(limit)
    )
    return list(session.scalars(statement))


def fuse(by_vector: list[int], by_keyword: list[int]) -> list[tuple[int, float]]:
    """Weighted reciprocal rank fusion: (id, sum of weight / (RRF_K + rank)) over both lists,
    best first, ties by id."""
    scores: dict[int, float] = {}
    for weight, ranking in ((1.0, by_vector), (KEYWORD_WEIGHT, by_keyword)):
        for rank, chunk_id in enumerate(ranking, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + weight / (RRF_K + rank)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


Reader = Callable[[], AbstractContextManager[Session]]
# the keyword side of a hybrid search runs here while the caller's thread ranks vectors
_KEYWORD_THREADS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="keyword-search")


def search(
    session: Session,
    readable: Select[int],
    query: str,
    vector: npt.NDArray[np.float32] | None,
    top_k: int,
    mode: Mode = Mode.HYBRID,
    keyword_reader: Reader | None = None,
) -> list[Hit]:
    """The `top_k` best chunks of the readable collections for `query` (and its `vector`).

    With a `keyword_reader` (a read transaction's factory), a hybrid search on SQLite ranks
    keywords in a second transaction on another thread while this one ranks vectors: the two
    sides take about as long each, and SQLite runs a query on one core. PostgreSQL already
    scans the vectors with parallel workers, so there a second transaction only competes
    for the same cores (measured at 100k chunks on 2 cores: 81.7 ms with, 79 without)."""
    depth = max(4 * top_k, 50)
    # SQLite: the keyword side of a hybrid search matches rare words only (keywords.py) and
    # runs beside the vector side; PostgreSQL's parallel scans and cheaper ranking need neither
    sqlite_hybrid = mode is Mode.HYBRID and vector is not None and is_sqlite(session)
    keywords: Future[list[int]] | None = None
    if sqlite_hybrid and keyword_reader is not None:
        keywords = _KEYWORD_THREADS.submit(_keywords_apart, keyword_reader, readable, query, depth)
    by_vector = (
        vector_candidates(session, readable, vector, depth)
        if mode is not Mode.KEYWORD and vector is not None
        else []
    )
    if keywords is not None:
        by_keyword = keywords.result()
    elif mode is not Mode.VECTOR:
        by_keyword = keyword_candidates(session, readable, query, depth, rare_only=sqlite_hybrid)
    else:
        by_keyword = []
    fused = fuse(by_vector, by_keyword)
    return _hits(session, readable, fused, top_k, by_vector, by_keyword)


def _keywords_apart(reader: Reader, readable: Select[int], query: str, depth: int) -> list[int]:
    with reader() as session:
        return keyword_candidates(session, readable, query, depth)


def _hits(
    session: Session,
    readable: Select[int],
    fused: list[tuple[int, float]],
    top_k: int,
    by_vector: list[int],
    by_keyword: list[int],
) -> list[Hit]:
    """The first `top_k` fused chunks that this transaction sees (a chunk the keyword side's
    own transaction ranked may have been deleted since; the next one takes its place)."""
    fused = fused[: 2 * top_k]
    if not fused:
        return []
    statement = (
        select(KnowledgeChunk, KnowledgeDocument.source, KnowledgeDocument.title)
        .add_columns(KnowledgeCollection.name)
        .join(KnowledgeDocument, KnowledgeDocument.id == KnowledgeChunk.document_id)
        .join(KnowledgeCollection, KnowledgeCollection.id == KnowledgeChunk.collection_id)
        .where(KnowledgeChunk.id.in_([i for i, _ in fused]))
        .where(KnowledgeChunk.collection_id.in_(readable))
    )
    rows = {row[0].id: row for row in session.execute(statement)}
    vector_rank = {chunk_id: rank for rank, chunk_id in enumerate(by_vector, start=1)}
    keyword_rank = {chunk_id: rank for rank, chunk_id in enumerate(by_keyword, start=1)}
    hits: list[Hit] = []
    for chunk_id, score in fused:
        if chunk_id not in rows:
            continue
        if len(hits) == top_k:
            break
        chunk, source, title, collection = rows[chunk_id]
        hits.append(
            Hit(
                collection=collection,
                document_id=chunk.document_id,
                source=source,
                title=title,
                location=dict(chunk.location),
                text=chunk.text,
                score=score,
                vector_rank=vector_rank.get(chunk_id),
                keyword_rank=keyword_rank.get(chunk_id),
            )
        )
    return hits
