"""PostgreSQL knowledge search latency: pgvector (exact, and with an HNSW index) vs numpy.

Builds, in a throwaway schema of the server at `--url`, an index of N synthetic chunks (random
384-dimension vectors, text of random words; made in SQL, so 100k take seconds) spread over
10 collections, then times `search()` per query, warm, for a reader of all collections and
one of a single collection (a tenth of the chunks): hybrid (its keyword side in a second
transaction, as the service runs it), keyword-only and vector-only with pgvector's exact
scan; with `--hnsw`, vector-only with an HNSW index (recall@10 against the exact); and
vector-only in numpy over float32 blobs (the path without pgvector). Prints a markdown
table and writes JSON; a tool, never part of the test suite.

    .venv/bin/python benchmarks/pgvector_bench.py --url postgresql://postgres@127.0.0.1:55433/postgres
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Select, create_engine, select, text
from sqlalchemy.orm import Session

from inhouse.knowledge import pgvector
from inhouse.knowledge.search import Mode, search
from inhouse.store.db import Database, open_database
from inhouse.store.tables import KnowledgeCollection

DEFAULT_OUT = Path("benchmarks/results/pgvector_bench.json")
DIMENSIONS = 384
COLLECTIONS = 10
WORDS = 5000
FILL = [
    "INSERT INTO knowledge_collections (id, name, created_at) "
    "SELECT g, 'c' || g, 0 FROM generate_series(1, 10) g",
    "INSERT INTO knowledge_documents (id, collection_id, source, content_hash, title, size, "
    "status, chunk_count, updated_at) SELECT g, 1 + g % 10, 'doc' || g, '', '', 0, 'indexed', "
    "100, 0 FROM generate_series(0, :n / 100) g",
    "INSERT INTO knowledge_chunks (id, document_id, collection_id, ordinal, text, location, "
    "token_count) SELECT g, g / 100, 1 + (g / 100) % 10, g % 100, (SELECT string_agg('w' || "
    "(random() * 5000)::int, ' ') FROM generate_series(1, 40 + 0 * g)), '{}', 60 "
    "FROM generate_series(1, :n) g",
    "INSERT INTO knowledge_fts (chunk_id, collection_id, tsv) "
    "SELECT id, collection_id, to_tsvector('english', text) FROM knowledge_chunks",
]
EMBED = (
    "INSERT INTO {table} (chunk_id, collection_id, embedding) SELECT id, collection_id, "
    "(SELECT array_agg(random() - 0.5) FROM generate_series(1, {d} + 0 * id))::public.halfvec "
    "FROM knowledge_chunks"
)


@contextmanager
def schema_db(url: str) -> Iterator[Database]:
    """A migrated store in a new schema of the server, dropped afterwards."""
    name = "bench_" + uuid.uuid4().hex[:12]
    admin = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as conn:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector SCHEMA public"))
        conn.execute(text(f"CREATE SCHEMA {name}"))
    db = open_database(f"{url}?options=-csearch_path%3D{name}")
    try:
        yield db
    finally:
        db.close()
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {name} CASCADE"))
        admin.dispose()


def build(db: Database, chunks: int) -> float:
    """Fill the index with `chunks` synthetic chunks; seconds taken."""
    start = time.perf_counter()
    with db.write() as session:
        for statement in FILL:
            session.execute(text(statement), {"n": chunks})
        pgvector.prepare(session, DIMENSIONS)
        session.execute(text(EMBED.format(table=pgvector.TABLE, d=DIMENSIONS)))
    vacuum_analyze(db)
    return time.perf_counter() - start


def vacuum_analyze(db: Database) -> None:
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE")


def timed(run: Callable[[], list[Any]], rounds: int) -> tuple[dict[str, float], list[Any]]:
    """p50/p99 milliseconds of `run` over `rounds` calls after one warm-up; its results."""
    run()
    times, results = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        results.append(run())
        times.append((time.perf_counter() - start) * 1000)
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {"p50_ms": round(statistics.median(ordered), 2), "p99_ms": round(p99, 2)}, results


def measure(
    session: Session,
    readable: Select[int],
    queries: list[tuple[str, Any]],
    mode: Mode,
    db: Database | None = None,
) -> tuple[dict[str, float], list[list[str]]]:
    """Latency of search() as the service calls it (the keyword side of a hybrid search in a
    second transaction when `db` is given), and its results."""
    it = iter(queries * 3)
    reader = db.read if db is not None else None

    def run() -> list[str]:
        query, vector = next(it)
        return [h.text for h in search(session, readable, query, vector, 10, mode, reader)]

    return timed(run, len(queries) * 2)


def recall(exact: list[list[str]], approximate: list[list[str]]) -> float:
    found = [len(set(e) & set(a)) / max(1, len(e)) for e, a in zip(exact, approximate, strict=True)]
    return round(sum(found) / len(found), 3)


def size_run(
    url: str, chunks: int, queries: int, hnsw: bool, rng: np.random.Generator
) -> dict[str, Any]:
    words = [f"w{int(i)}" for i in rng.integers(0, WORDS, (queries, 3)).ravel()]
    vectors = rng.random((queries, DIMENSIONS), dtype=np.float32) - 0.5
    asked = [(" ".join(words[3 * i : 3 * i + 3]), vectors[i]) for i in range(queries)]
    result: dict[str, Any] = {}
    with schema_db(url) as db:
        result["build_s"] = round(build(db, chunks), 1)
        readers = {
            "all": select(KnowledgeCollection.id),
            "one collection": select(KnowledgeCollection.id).where(KnowledgeCollection.id == 1),
        }
        exact: dict[str, list[list[str]]] = {}
        for reader, readable in readers.items():
            row: dict[str, Any] = {}
            with db.read() as session:
                row["hybrid (pgvector exact)"], _ = measure(
                    session, readable, asked, Mode.HYBRID, db
                )
                row["vector (pgvector exact)"], exact[reader] = measure(
                    session, readable, asked, Mode.VECTOR
                )
                row["keyword"], _ = measure(session, readable, asked, Mode.KEYWORD)
            result[reader] = row
        if hnsw:
            result["hnsw_build_s"] = hnsw_run(db, readers, asked, exact, result)
        result["numpy"] = numpy_run(db, readers, asked)
    return result


def hnsw_run(
    db: Database,
    readers: dict[str, Select[int]],
    asked: list[tuple[str, Any]],
    exact: dict[str, list[list[str]]],
    result: dict[str, Any],
) -> float:
    """Vector-only latency and recall@10 with an HNSW index (iterative scan); build seconds."""
    start = time.perf_counter()
    with db.write() as session:
        session.execute(
            text(
                f"CREATE INDEX ON {pgvector.TABLE} USING hnsw (embedding public.halfvec_cosine_ops)"
            )
        )
    seconds = round(time.perf_counter() - start, 1)
    for reader, readable in readers.items():
        with db.read() as session:
            session.execute(text("SET LOCAL hnsw.iterative_scan = strict_order"))
            stats, found = measure(session, readable, asked, Mode.VECTOR)
        stats["recall@10"] = recall(exact[reader], found)
        result[reader]["vector (pgvector HNSW)"] = stats
    return seconds


def numpy_run(
    db: Database, readers: dict[str, Select[int]], asked: list[tuple[str, Any]]
) -> dict[str, Any]:
    """Vector-only latency without pgvector: the vectors as float32 blobs, ranked in numpy."""
    with db.write() as session:
        session.execute(
            text(
                "INSERT INTO knowledge_vectors (chunk_id, collection_id, embedding) "
                # zero vectors: the time goes to fetching and multiplying, not to their values
                "SELECT chunk_id, collection_id, decode(repeat('00', 4 * 384), 'hex') "
                f"FROM {pgvector.TABLE}"
            )
        )
        session.execute(text(f"DROP TABLE {pgvector.TABLE}"))
    out = {}
    for reader, readable in readers.items():
        with db.read() as session:
            out[reader], _ = measure(session, readable, asked[:10], Mode.VECTOR)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="a PostgreSQL server with pgvector")
    parser.add_argument("--chunks", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--hnsw", action="store_true", help="also time an HNSW index (slow)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    result = {
        str(n): size_run(args.url, n, args.queries, args.hnsw, rng) for n in sorted(args.chunks)
    }
    report(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


def report(result: dict[str, Any]) -> None:
    print("| chunks | reader | search | p50 ms | p99 ms | recall@10 |")
    print("|---|---|---|---|---|---|")
    for size, run in result.items():
        for reader in ("all", "one collection"):
            rows = {**run[reader], "vector (numpy, blobs)": run["numpy"][reader]}
            for name, stats in rows.items():
                recall_10 = stats.get("recall@10", "")
                print(
                    f"| {size} | {reader} | {name} | {stats['p50_ms']} | {stats['p99_ms']} "
                    f"| {recall_10} |"
                )
        hnsw = f", HNSW index {run['hnsw_build_s']} s" if "hnsw_build_s" in run else ""
        print(f"| {size} | | build {run['build_s']} s{hnsw} | | | |")


if __name__ == "__main__":
    main()
