"""Knowledge benchmark: ingestion speed, and query latency of hybrid vs vector vs keyword search.

Ingestion: the standard library's documentation as `pydoc` renders it (text already on the
machine), one file per module, through the real service (parse, chunk, embed, write).
Latency: the index is then grown to `--chunks` chunks by copying those chunks (their real
vectors, slightly perturbed) and timed per query, without the query's own embedding (timed
apart). Vector search runs in SQL with sqlite-vec and, for comparison, in numpy. Prints a
markdown table and writes JSON; it is a tool, never part of the test suite.

    .venv/bin/python benchmarks/knowledge_bench.py                    # 60 modules, 10k chunks
    .venv/bin/python benchmarks/knowledge_bench.py --modules 20 --chunks 2000   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import pkgutil
import pydoc
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import select

from inhouse.audit.trail import open_trail
from inhouse.auth.authenticate import local_operator
from inhouse.config import load_settings
from inhouse.embeddings.minilm import MiniLMEmbedder
from inhouse.knowledge.access import readable_ids
from inhouse.knowledge.chunking import Chunk
from inhouse.knowledge.index import VEC_LOADED, write_chunks
from inhouse.knowledge.search import Mode, search
from inhouse.knowledge.service import KnowledgeService
from inhouse.store.db import Database, open_database
from inhouse.store.tables import KnowledgeChunk, KnowledgeDocument, KnowledgeVector

DEFAULT_OUT = Path("benchmarks/results/knowledge_bench.json")
ACTOR = "bench"


class TimedEmbedder:
    """The real embedder, with the seconds spent embedding added up."""

    def __init__(self, inner: MiniLMEmbedder) -> None:
        self.inner = inner
        self.name, self.dimensions = inner.name, inner.dimensions
        self.seconds = 0.0

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        start = time.perf_counter()
        try:
            return self.inner.embed(texts)
        finally:
            self.seconds += time.perf_counter() - start

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.inner.count_tokens(texts)


def write_corpus(folder: Path, modules: int) -> int:
    names = sorted(
        m.name for m in pkgutil.iter_modules() if m.module_finder.path.startswith(sys.base_prefix)
    )  # type: ignore[union-attr]
    written = 0
    for name in names:
        if written == modules or name.startswith("_") or name in ("antigravity", "this"):
            continue
        try:
            text = pydoc.render_doc(name, renderer=pydoc.plaintext)
        except (ImportError, pydoc.ErrorDuringImport, SyntaxError):
            continue
        (folder / f"{name}.txt").write_text(text)
        written += 1
    return written


def ingest(db: Database, home: Path, folder: Path, embedder: TimedEmbedder) -> dict[str, Any]:
    settings = load_settings(None, home=home)
    service = KnowledgeService(db, open_trail(settings, db), settings.knowledge, lambda: embedder)
    db_group(db, service)
    start = time.perf_counter()
    report = service.add(ACTOR, "bench", folder)
    seconds = time.perf_counter() - start
    docs = report.counts["added"]
    chunks = service.show("bench")["chunks"]
    return {
        "documents": docs,
        "chunks": chunks,
        "seconds": round(seconds, 2),
        "docs_per_s": round(docs / seconds, 2),
        "chunks_per_s": round(chunks / seconds, 1),
        "embedder_share": round(embedder.seconds / seconds, 3),
    }


def db_group(db: Database, service: KnowledgeService) -> None:
    from inhouse.auth.directory import Directory

    with db.write() as session:
        Directory(session, service.audit, ACTOR).add_group("bench")
    service.create(ACTOR, "bench", "bench")


def grow(db: Database, target: int, rng: np.random.Generator) -> None:
    """Copy the ingested chunks (vectors perturbed, renormalized) until `target` exist."""
    with db.read() as session:
        rows = session.execute(
            select(
                KnowledgeChunk.text, KnowledgeChunk.collection_id, KnowledgeVector.embedding
            ).join(KnowledgeVector, KnowledgeVector.chunk_id == KnowledgeChunk.id)
        ).all()
    have, copy = len(rows), 0
    while have < target:
        copy += 1
        take = rows[: min(len(rows), target - have)]
        vectors = np.stack([np.frombuffer(r.embedding, dtype="<f4") for r in take])
        vectors = vectors + rng.normal(0, 0.02, vectors.shape).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        with db.write() as session:
            document = KnowledgeDocument(
                collection_id=take[0].collection_id,
                source=f"copy-{target}-{copy}",
                content_hash="",
                size=0,
                status="indexed",
                chunk_count=len(take),
                updated_at=time.time(),
            )
            session.add(document)
            session.flush()
            chunks = [Chunk(r.text, {}, 0) for r in take]
            write_chunks(session, document.id, take[0].collection_id, chunks, vectors)
        have += len(take)


def latency(
    db: Database, queries: list[str], vectors: npt.NDArray[np.float32], mode: Mode, sql_vec: bool
) -> dict[str, float]:
    readable = readable_ids(local_operator(), load_settings(None).knowledge, None)
    times = []
    with db.read() as session:
        info = session.connection().connection.info
        if sql_vec:
            info.pop(VEC_LOADED, None)  # sqlite-vec is (re)loaded on first use
        else:
            info[VEC_LOADED] = False  # as if it were missing: numpy ranks
        for _ in range(2):
            for query, vector in zip(queries, vectors, strict=True):
                start = time.perf_counter()
                search(session, readable, query, vector, 5, mode)
                times.append((time.perf_counter() - start) * 1000)
    times = times[len(queries) :]  # the first round warms caches
    ordered = sorted(times)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", type=int, default=60)
    parser.add_argument("--chunks", type=int, nargs="+", default=[10_000])
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    embedder = TimedEmbedder(MiniLMEmbedder(threads=args.threads))
    with tempfile.TemporaryDirectory() as tmp:
        folder, home = Path(tmp) / "corpus", Path(tmp) / "home"
        folder.mkdir()
        home.mkdir()
        write_corpus(folder, args.modules)
        db = open_database(f"sqlite:///{home / 'inhouse.db'}")
        result: dict[str, Any] = {"ingest": ingest(db, home, folder, embedder), "latency": {}}
        with db.read() as session:
            texts = list(session.scalars(select(KnowledgeChunk.text).limit(args.queries)))
        queries = [" ".join(t.split()[3:15]) for t in texts]
        start = time.perf_counter()
        query_vectors = embedder.inner.embed(queries)
        result["query_embed_ms"] = round((time.perf_counter() - start) * 1000 / len(queries), 2)
        for size in sorted(args.chunks):
            grow(db, size, rng)
            result["latency"][size] = {
                f"{mode.value}{'' if sql else ' (numpy)'}": latency(
                    db, queries, query_vectors, mode, sql
                )
                for mode, sql in (
                    (Mode.HYBRID, True),
                    (Mode.VECTOR, True),
                    (Mode.KEYWORD, True),
                    (Mode.HYBRID, False),
                    (Mode.VECTOR, False),
                )
            }
        db.close()
    report(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


def report(result: dict[str, Any]) -> None:
    i = result["ingest"]
    print(
        f"\ningestion: {i['documents']} documents, {i['chunks']} chunks in {i['seconds']} s: "
        f"{i['docs_per_s']} docs/s, {i['chunks_per_s']} chunks/s, "
        f"embedder {i['embedder_share']:.0%} of the time"
    )
    print(f"query embedding: {result['query_embed_ms']} ms per query\n")
    print("| chunks | search | p50 ms | p99 ms |\n|---:|---|---:|---:|")
    for size, modes in result["latency"].items():
        for mode, figures in modes.items():
            print(f"| {size} | {mode} | {figures['p50_ms']} | {figures['p99_ms']} |")


if __name__ == "__main__":
    main()
