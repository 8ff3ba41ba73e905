"""Keyword candidates: full-text matches of a query's words, best first (FTS5 bm25 on SQLite,
ts_rank_cd on PostgreSQL), from the readable collections only.

On SQLite each collection has its own FTS5 table (index.py), so bm25's statistics are those of
one collection: the readable collections' ids are resolved first, each of their tables is
queried, and the matches are merged by bm25 (lower is better; ties by chunk id). A collection
the caller may not read is never opened, so it never changes which chunks come back, nor their
order. On PostgreSQL the readable collections are a condition of the one query.

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

import heapq
import re
from typing import Any, Protocol

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    column,
    func,
    literal_column,
    select,
    table,
    text,
)
from sqlalchemy.orm import Session

from inhouse.knowledge.index import fulltext_tables, is_sqlite
from inhouse.knowledge.stopwords import STOP_WORDS

MAX_QUERY_WORDS = 32
COMMON_AT = 2000  # a word in this many readable chunks or more only narrows, never widens
COMMON_FALLBACK = 3
WORD = re.compile(r"\w+")
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
    index: _Index = _Fts5(session, readable) if is_sqlite(session) else _TsVector(session, readable)
    if not rare_only:
        return index.ranked(words, limit, every=False)
    frequency = {w: index.frequency(w, COMMON_AT) for w in words}
    rare = [w for w in words if 0 < frequency[w] < COMMON_AT]
    if rare:
        return index.ranked(rare, limit, every=False)
    common = sorted((w for w in words if frequency[w]), key=lambda w: frequency[w])
    if not common:
        return []
    return index.ranked(common[:COMMON_FALLBACK], limit, every=True)


class _Index(Protocol):
    def frequency(self, word: str, cap: int) -> int:
        """How many readable chunks hold `word`, counted up to `cap`."""

    def ranked(self, words: list[str], limit: int, *, every: bool) -> list[int]:
        """The best `limit` readable chunks holding any (if `every`, all) of `words`."""


class _Fts5:
    """SQLite: the FTS5 tables of the readable collections, each queried on its own."""

    def __init__(self, session: Session, readable: Select[int]) -> None:
        self.session = session
        self.tables = list(fulltext_tables(session, session.scalars(readable)).values())

    def frequency(self, word: str, cap: int) -> int:
        found = 0
        for name in self.tables:  # summed over the tables, until the cap is reached
            counted = text(
                f"SELECT count(*) FROM (SELECT rowid FROM {name} "
                f"WHERE {name} MATCH :match LIMIT :cap)"
            )
            found += int(
                self.session.scalar(counted, {"match": f'"{word}"', "cap": cap - found}) or 0
            )
            if found >= cap:
                break
        return found

    def ranked(self, words: list[str], limit: int, *, every: bool) -> list[int]:
        match = (" AND " if every else " OR ").join(f'"{w}"' for w in words)
        scored: list[tuple[float, int]] = []
        for name in self.tables:
            statement = text(
                f"SELECT bm25({name}) AS score, rowid FROM {name} WHERE {name} MATCH :match "
                "ORDER BY score, rowid LIMIT :limit"
            )
            rows = self.session.execute(statement, {"match": match, "limit": limit})
            scored += [(float(score), int(rowid)) for score, rowid in rows]
        return [chunk_id for _, chunk_id in heapq.nsmallest(limit, scored)]


class _TsVector:
    """PostgreSQL: the one tsvector table, the readable collections a condition of the query."""

    def __init__(self, session: Session, readable: Select[int]) -> None:
        self.session = session
        self.readable = readable

    def frequency(self, word: str, cap: int) -> int:
        matching = self._matching([word], every=False).limit(cap).subquery()
        return int(self.session.scalar(select(func.count()).select_from(matching)) or 0)

    def ranked(self, words: list[str], limit: int, *, every: bool) -> list[int]:
        rank = func.ts_rank_cd(POSTGRES_FTS.c.tsv, _tsquery(words, every))
        statement = self._matching(words, every=every).order_by(rank.desc())
        return list(self.session.scalars(statement.limit(limit)))

    def _matching(self, words: list[str], *, every: bool) -> Select[Any]:
        return select(POSTGRES_FTS.c.chunk_id).where(
            POSTGRES_FTS.c.tsv.op("@@")(_tsquery(words, every)),
            POSTGRES_FTS.c.collection_id.in_(self.readable),
        )


def _tsquery(words: list[str], every: bool) -> Any:
    config: ColumnElement[Any] = literal_column("'english'::regconfig")
    return func.to_tsquery(config, (" & " if every else " | ").join(words))
