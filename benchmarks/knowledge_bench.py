"""Knowledge benchmark: ingestion speed, retrieval quality, and query latency of hybrid vs vector
vs keyword search.

Ingestion: the standard library's documentation as `pydoc` renders it (text already on the
machine), one file per module, through the real service (parse, chunk, embed, write).
Quality (knowledge_quality.py): recall@5 and MRR of each mode for hand-written paraphrases of
42 modules' purposes, on the ingested index, and of a grid of fusion variants.
Latency: the index is then grown to `--chunks` chunks by copying those chunks (their real
vectors, slightly perturbed) and timed per query, without the query's own embedding (timed
apart). Vector search runs in SQL with sqlite-vec and, for comparison, in numpy. Prints a
markdown table and writes JSON; it is a tool, never part of the test suite.

    .venv/bin/python benchmarks/knowledge_bench.py --chunks 10000 100000   # the full run
    .venv/bin/python benchmarks/knowledge_bench.py --chunks 5000 --no-variants  # a smoke run
"""

from __future__ import annotations

import argparse
import json
import pydoc
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import knowledge_quality as quality
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


def write_corpus(folder: Path, names: list[str]) -> int:
    """One `<module>.txt` per module, as `pydoc` renders its documentation."""
    for name in names:
        (folder / f"{name}.txt").write_text(pydoc.render_doc(name, renderer=pydoc.plaintext))
    return len(names)


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
                search(session, readable, query, vector, 5, mode, db.read)
                times.append((time.perf_counter() - start) * 1000)
    times = times[len(queries) :]  # the first round warms caches
    ordered = sorted(times)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, nargs="+", default=[10_000])
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--no-variants", action="store_true", help="skip the fusion grid")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    embedder = TimedEmbedder(MiniLMEmbedder(threads=args.threads))
    with tempfile.TemporaryDirectory() as tmp:
        folder, home = Path(tmp) / "corpus", Path(tmp) / "home"
        folder.mkdir()
        home.mkdir()
        write_corpus(folder, quality.modules())
        db = open_database(f"sqlite:///{home / 'inhouse.db'}")
        result: dict[str, Any] = {"ingest": ingest(db, home, folder, embedder)}
        result["quality"] = measure_quality(db, embedder, not args.no_variants)
        result.update(measure_latency(db, embedder, args.chunks, args.queries))
        db.close()
    report(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


def measure_quality(db: Database, embedder: TimedEmbedder, grid: bool) -> dict[str, Any]:
    """Recall@5 and MRR per mode on the ingested corpus (before any copies are added)."""
    readable = readable_ids(local_operator(), load_settings(None).knowledge, ["bench"])
    vectors = embedder.inner.embed([q.text for q in quality.questions()])
    measured: dict[str, Any] = {
        "questions": len(vectors),
        "shipped": quality.shipped(db, readable, vectors),
        "rare words at 2 %": quality.pruned(db, readable, vectors),
    }
    if grid:
        measured["variants"] = quality.variants(db, readable, vectors)
    return measured


def measure_latency(
    db: Database, embedder: TimedEmbedder, sizes: list[int], count: int
) -> dict[str, Any]:
    """p50/p99 per mode at each index size, for chunk fragments and for the paraphrases."""
    rng = np.random.default_rng(0)
    with db.read() as session:
        texts = list(session.scalars(select(KnowledgeChunk.text).limit(count)))
    sets = {
        "fragments": [" ".join(t.split()[3:15]) for t in texts],
        "questions": [q.text for q in quality.questions()],
    }
    start = time.perf_counter()
    vectors = {name: embedder.inner.embed(queries) for name, queries in sets.items()}
    embed_ms = (time.perf_counter() - start) * 1000 / sum(len(q) for q in sets.values())
    table: dict[int, dict[str, Any]] = {}
    for size in sorted(sizes):
        grow(db, size, rng)
        table[size] = {}
        for name, queries in sets.items():
            runs = RUNS if name == "fragments" else RUNS[:3]
            for mode, sql in runs:
                label = f"{mode.value}{'' if sql else ' (numpy)'}, {name}"
                table[size][label] = latency(db, queries, vectors[name], mode, sql)
    return {"query_embed_ms": round(embed_ms, 2), "latency": table}


RUNS = (
    (Mode.HYBRID, True),
    (Mode.VECTOR, True),
    (Mode.KEYWORD, True),
    (Mode.HYBRID, False),
    (Mode.VECTOR, False),
)


def report(result: dict[str, Any]) -> None:
    i = result["ingest"]
    print(
        f"\ningestion: {i['documents']} documents, {i['chunks']} chunks in {i['seconds']} s: "
        f"{i['docs_per_s']} docs/s, {i['chunks_per_s']} chunks/s, "
        f"embedder {i['embedder_share']:.0%} of the time"
    )
    q = result["quality"]
    print(f"\nretrieval quality, {q['questions']} paraphrased questions, top 10 passages\n")
    print("| search | recall@1 | recall@5 | recall@10 | MRR |\n|---|---:|---:|---:|---:|")
    for mode, f in q["shipped"].items():
        print(f"| {mode} | {f['recall@1']} | {f['recall@5']} | {f['recall@10']} | {f['mrr']} |")
    pruned = q["rare words at 2 %"]
    print(f"\nthe same, a word common at {pruned['common_at']} chunks (2 %, as 2,000 at 100k):\n")
    for mode, f in pruned.items():
        if mode != "common_at":
            print(f"| {mode} | {f['recall@1']} | {f['recall@5']} | {f['recall@10']} | {f['mrr']} |")
    if "variants" in q:
        print("\n| fusion variant | recall@5 | MRR |\n|---|---:|---:|")
        for name, f in sorted(q["variants"].items(), key=lambda v: -v[1]["mrr"]):
            print(f"| {name} | {f['recall@5']} | {f['mrr']} |")
    print(f"\nquery embedding: {result['query_embed_ms']} ms per query\n")
    print("| chunks | search, queries | p50 ms | p99 ms |\n|---:|---|---:|---:|")
    for size, modes in result["latency"].items():
        for mode, figures in modes.items():
            print(f"| {size} | {mode} | {figures['p50_ms']} | {figures['p99_ms']} |")


if __name__ == "__main__":
    main()
