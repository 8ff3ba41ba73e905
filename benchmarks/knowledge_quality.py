"""Retrieval quality for knowledge_bench: standard-library modules found from a paraphrase of
their purpose (written by hand, not the module's own first line), by hybrid, vector-only and
keyword-only search, plus a grid of fusion variants (RRF k, weights, candidate depth) scored on
the same candidate lists, so the shipped fusion is chosen by measurement."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Select, func, select

from inhouse.knowledge import keywords
from inhouse.knowledge.evaluate import Question, evaluate
from inhouse.knowledge.keywords import keyword_candidates
from inhouse.knowledge.search import vector_candidates
from inhouse.store.db import Database
from inhouse.store.tables import KnowledgeChunk, KnowledgeDocument

# module -> what someone who needs it would ask, in their own words
PARAPHRASES = {
    "json": "turn nested dictionaries and lists into the text format web services exchange, "
    "and read that text back into objects",
    "csv": "read and write tables of rows whose fields are separated by commas, as "
    "spreadsheets export them",
    "sqlite3": "store and query data with SQL in a database that lives in one local file, "
    "without a server",
    "hashlib": "compute a SHA-256 or MD5 fingerprint of some bytes",
    "random": "pick a number by chance, shuffle a list or choose an element at random",
    "datetime": "represent a moment with year, month, day, hour and minute, and subtract two "
    "of them",
    "calendar": "print the days of a month laid out in weeks, like a wall planner",
    "heapq": "keep a priority queue in a plain list so the smallest item can be popped quickly",
    "bisect": "insert into a sorted list while keeping it sorted, finding the position by "
    "repeated halving",
    "shutil": "copy or move whole folders and delete a directory tree with everything inside",
    "glob": "list the files whose names match a pattern like *.txt in a directory",
    "zipfile": "pack several files into a compressed archive that Windows users can open, "
    "or unpack one",
    "tarfile": "bundle files into a tape archive, possibly gzip or bz2 compressed, and "
    "extract it again",
    "gzip": "compress or decompress a single file the way the GNU command line tool does",
    "base64": "encode binary data as printable ASCII characters to put it in an email or URL",
    "subprocess": "run another program, feed it input and capture its output and exit status",
    "threading": "run several functions at the same time in one process, with locks around "
    "shared data",
    "argparse": "declare the options and flags a command-line tool accepts and print usage "
    "help automatically",
    "logging": "write diagnostic messages with severity levels like warning and error to "
    "files or the console",
    "difflib": "show what changed between two versions of a text, line by line",
    "textwrap": "break a long paragraph into lines no wider than a given number of characters",
    "re": "find or replace substrings matching a pattern with wildcards, repetitions and groups",
    "struct": "pack numbers into a fixed binary layout of bytes as C code would, and unpack them",
    "pickle": "save any Python object to a file as bytes and load it back later",
    "copy": "duplicate an object including every object nested inside it, not just the outer "
    "container",
    "functools": "remember the results of an expensive function so repeated calls return at "
    "once, or fix some of a function's arguments",
    "itertools": "produce all combinations or permutations of items and chain several "
    "iterables lazily",
    "collections": "count how often each item occurs, and dictionaries that supply a default "
    "for missing keys",
    "statistics": "the average, the middle value and the spread of a list of measurements",
    "fractions": "exact arithmetic on ratios such as one third, without floating point "
    "rounding errors",
    "uuid": "create random identifiers that are practically guaranteed never to collide",
    "tempfile": "make a scratch file or folder that disappears when you are done with it",
    "getpass": "ask for a password on the terminal without showing what is typed",
    "timeit": "measure how long a short piece of code takes when repeated many times",
    "pprint": "print a deeply nested data structure indented and readable instead of on one "
    "long line",
    "secrets": "generate unguessable tokens for password resets and security keys",
    "weakref": "refer to an object without preventing the garbage collector from reclaiming it",
    "signal": "react when the operating system interrupts the process, for example on Ctrl-C "
    "or an alarm",
    "platform": "find out which operating system, processor architecture and interpreter "
    "version the program runs on",
    "queue": "hand work items safely from producer threads to consumer threads, blocking "
    "while there are none",
    "contextlib": "write a helper for the with statement from a generator function instead "
    "of a class",
    "shlex": "split a command line into words the way a Unix shell would, honouring quotes",
}
# neighbours of the modules above, so that a query has plausible wrong answers
DISTRACTORS = [
    "fnmatch",
    "zlib",
    "math",
    "cmath",
    "operator",
    "string",
    "abc",
    "atexit",
    "gettext",
    "mimetypes",
    "html",
    "dataclasses",
    "wave",
    "colorsys",
    "sched",
    "webbrowser",
    "getopt",
    "optparse",
]
DEPTHS = (50, 100, 200)  # candidates taken from each list before fusion
RRF_KS = (10, 30, 60)
WEIGHTS = ((1.0, 1.0), (1.0, 0.5), (1.0, 0.3), (0.5, 1.0))  # (vector, keyword)


@dataclass(frozen=True)
class Variant:
    depth: int
    k: int
    weights: tuple[float, float]

    @property
    def name(self) -> str:
        return f"depth {self.depth}, k {self.k}, weights {self.weights[0]}/{self.weights[1]}"


def modules() -> list[str]:
    return [*PARAPHRASES, *DISTRACTORS]


def questions() -> list[Question]:
    return [Question(text, (f"{module}.txt",)) for module, text in PARAPHRASES.items()]


def shipped(
    db: Database, readable: Select[int], vectors: npt.NDArray[np.float32]
) -> dict[str, Any]:
    """What `inhouse knowledge eval` reports for these questions (the shipped fusion)."""
    with db.read() as session:
        result = evaluate(session, readable, questions(), vectors, 10)
    return {mode.value: _rounded(figures) for mode, figures in result.metrics.items()}


def pruned(db: Database, readable: Select[int], vectors: npt.NDArray[np.float32]) -> dict[str, Any]:
    """`shipped`, with keywords.COMMON_AT scaled to this corpus as it stands to 100k chunks
    (2,000 of 100k = 2 %): how the rare-word matching ranks at the scale it is meant for."""
    with db.read() as session:
        total = session.scalar(select(func.count()).select_from(KnowledgeChunk)) or 0
    shipped_at = keywords.COMMON_AT
    keywords.COMMON_AT = max(1, round(total * shipped_at / 100_000))
    try:
        return {"common_at": keywords.COMMON_AT, **shipped(db, readable, vectors)}
    finally:
        keywords.COMMON_AT = shipped_at


def variants(
    db: Database, readable: Select[int], vectors: npt.NDArray[np.float32]
) -> dict[str, dict[str, float]]:
    """Recall@5 and MRR@10 of each fusion variant on the same candidate lists."""
    asked = questions()
    with db.read() as session:
        chunks = select(KnowledgeChunk.id, KnowledgeChunk.document_id)
        document_of = {c: d for c, d in session.execute(chunks)}
        names = {
            i: Path(source).name
            for i, source in session.execute(select(KnowledgeDocument.id, KnowledgeDocument.source))
        }
        lists = [
            (
                vector_candidates(session, readable, vector, max(DEPTHS)),
                keyword_candidates(session, readable, q.text, max(DEPTHS)),
            )
            for q, vector in zip(asked, vectors, strict=True)
        ]
    grid = [Variant(d, k, w) for d in DEPTHS for k in RRF_KS for w in WEIGHTS]
    results = {}
    for variant in grid:
        ranks = []
        for q, (by_vector, by_keyword) in zip(asked, lists, strict=True):
            fused = _fuse(variant, by_vector[: variant.depth], by_keyword[: variant.depth])
            documents = [names[document_of[c]] for c in fused[:10]]
            ranks.append(documents.index(q.expected[0]) + 1 if q.expected[0] in documents else 0)
        results[variant.name] = _scores(ranks)
    return results


def _fuse(variant: Variant, by_vector: list[int], by_keyword: list[int]) -> list[int]:
    scores: dict[int, float] = {}
    for weight, ranking in zip(variant.weights, (by_vector, by_keyword), strict=True):
        for rank, chunk in enumerate(ranking, start=1):
            scores[chunk] = scores.get(chunk, 0.0) + weight / (variant.k + rank)
    return [c for c, _ in sorted(scores.items(), key=lambda item: (-item[1], item[0]))]


def _scores(ranks: list[int]) -> dict[str, float]:
    return {
        "recall@5": round(sum(1 for r in ranks if 0 < r <= 5) / len(ranks), 3),
        "mrr": round(float(np.mean([1 / r if r else 0.0 for r in ranks])), 3),
    }


def _rounded(figures: dict[str, float]) -> dict[str, float]:
    return {name: round(value, 3) for name, value in figures.items()}
