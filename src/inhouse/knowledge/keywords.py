"""Keyword candidates: full-text matches of a query's words, best first (FTS5 bm25 on SQLite,
ts_rank_cd on PostgreSQL), with the readable collections in the WHERE clause.

A word that most chunks contain matches tens of thousands of rows at 100k chunks, and ranking
each costs more than everything else a search does (measured: 54-100 ms of a 221 ms hybrid
search). So, as a "common terms" query does, a word matches only when it is rare among the
chunks the caller may read: its document frequency there is counted (stopping at COMMON_AT)
and words at or above it are left out of the match. If every word is common, the chunks that
hold all of the COMMON_FALLBACK rarest ones match instead. The counts run on the readable
collections only, so what other collections hold never changes which words are used.

This serves hybrid search on SQLite, where the vector side finds what common words would. A
keyword-only search matches every word, and so does PostgreSQL, whose ts_rank_cd over a GIN
match costs less than the counting (measured at 100k chunks: hybrid 124 ms with the counts,
79 without).
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import ColumnElement, Integer, Select, column, func, literal_column, select, table
from sqlalchemy.orm import Session

from inhouse.knowledge.index import is_sqlite
from inhouse.knowledge.stopwords import STOP_WORDS
from inhouse.store.tables import KnowledgeChunk

MAX_QUERY_WORDS = 32
COMMON_AT = 2000  # a word in this many readable chunks or more only narrows, never widens
COMMON_FALLBACK = 3
WORD = re.compile(r"\w+")
SQLITE_FTS = table("knowledge_fts", column("rowid", Integer))
POSTGRES_FTS = table(
    "knowledge_fts", column("chunk_id", Integer), column("collection_id", Integer), column("tsv")
)


def query_words(query: str) -> list[str]:
    """The query's distinct lower-cased words, stop words left out, at most MAX_QUERY_WORDS."""
    words = [w for w in dict.fromkeys(WORD.findall(query.lower())) if w not in STOP_WORDS]
    return words[:MAX_QUERY_WORDS]


def keyword_candidates(
    session: Session, readable: Select[int], query: str, limit: int, *, rare_only: bool = True
) -> list[int]:
    """Chunk ids holding the query's words, best first: with `rare_only`, its rare words (see
    the module's doc), as hybrid search asks; else any of them, as keyword-only search does
    (measured on the paraphrased questions with the limit scaled to the corpus: keyword-only
    recall@5 0.881 with every word, 0.786 with the rare ones; hybrid 0.976 and 1.0)."""
    words = query_words(query)
    if not words:
        return []
    if not rare_only:
        return _ranked(session, readable, words, limit, every=False)
    frequency = {w: _frequency(session, readable, [w], COMMON_AT) for w in words}
    rare = [w for w in words if 0 < frequency[w] < COMMON_AT]
    if rare:
        return _ranked(session, readable, rare, limit, every=False)
    common = sorted((w for w in words if frequency[w]), key=lambda w: frequency[w])
    if not common:
        return []
    return _ranked(session, readable, common[:COMMON_FALLBACK], limit, every=True)


def _frequency(session: Session, readable: Select[int], words: list[str], cap: int) -> int:
    """How many readable chunks hold `words`, counted up to `cap`."""
    matching = _matching(session, readable, words, every=False).limit(cap).subquery()
    return int(session.scalar(select(func.count()).select_from(matching)) or 0)


def _ranked(
    session: Session, readable: Select[int], words: list[str], limit: int, *, every: bool
) -> list[int]:
    statement = _matching(session, readable, words, every=every)
    if is_sqlite(session):
        fts: ColumnElement[Any] = literal_column("knowledge_fts")
        statement = statement.order_by(func.bm25(fts))
    else:
        rank = func.ts_rank_cd(POSTGRES_FTS.c.tsv, _tsquery(words, every))
        statement = statement.order_by(rank.desc())
    return list(session.scalars(statement.limit(limit)))


def _matching(
    session: Session, readable: Select[int], words: list[str], *, every: bool
) -> Select[Any]:
    """The ids of the readable chunks that hold any (or, if `every`, all) of `words`."""
    if is_sqlite(session):
        match = (" AND " if every else " OR ").join(f'"{w}"' for w in words)
        fts: ColumnElement[Any] = literal_column("knowledge_fts")
        return (
            select(SQLITE_FTS.c.rowid)
            .join(KnowledgeChunk, KnowledgeChunk.id == SQLITE_FTS.c.rowid)
            .where(fts.op("MATCH")(match), KnowledgeChunk.collection_id.in_(readable))
        )
    return select(POSTGRES_FTS.c.chunk_id).where(
        POSTGRES_FTS.c.tsv.op("@@")(_tsquery(words, every)),
        POSTGRES_FTS.c.collection_id.in_(readable),
    )


def _tsquery(words: list[str], every: bool) -> Any:
    config: ColumnElement[Any] = literal_column("'english'::regconfig")
    return func.to_tsquery(config, (" & " if every else " | ").join(words))
