"""Retrieval evaluation: how well each search mode finds the documents known to answer questions.

Every mode searches the same chunks with the same readable-collections condition; a question's
rank in a mode is the position (1-based, among the top_k passages) of the first passage from
one of its expected documents.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from inhouse.errors import InvalidRequest
from inhouse.knowledge.search import Mode, search
from inhouse.store.tables import KnowledgeDocument

CUTOFFS = (1, 5, 10)
MAX_QUESTIONS = 10_000


@dataclass(frozen=True)
class Question:
    """A question and the documents (ids or sources) whose passages answer it."""

    text: str
    expected: tuple[str, ...]


@dataclass(frozen=True)
class Ranked:
    """One question's outcome: its rank in each mode (None: not among the top_k passages)."""

    question: str
    expected: tuple[str, ...]
    ranks: dict[Mode, int | None]


@dataclass(frozen=True)
class Evaluation:
    """Recall@k (k <= top_k) and MRR per mode, averaged over the questions, and each question."""

    top_k: int
    metrics: dict[Mode, dict[str, float]]
    questions: list[Ranked]


def parse_questions(lines: Iterable[str]) -> list[Question]:
    """Questions from JSON lines `{"question": str, "expected": str | int | list}`; blank
    lines are skipped; a malformed line is refused with its number."""
    questions = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        questions.append(_question(number, line))
        if len(questions) > MAX_QUESTIONS:
            raise InvalidRequest(f"more than {MAX_QUESTIONS} questions", param="questions")
    if not questions:
        raise InvalidRequest("the file holds no question", param="questions")
    return questions


def _question(number: int, line: str) -> Question:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"line {number}: not JSON ({exc.msg})", param="questions") from None
    text = item.get("question") if isinstance(item, dict) else None
    expected = item.get("expected") if isinstance(item, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequest(f"line {number}: 'question' must be a non-empty string")
    names = expected if isinstance(expected, list) else [expected]
    if not names or not all(isinstance(n, str | int) and str(n).strip() for n in names):
        raise InvalidRequest(
            f"line {number}: 'expected' must be a document source or id, or a list of them"
        )
    return Question(text, tuple(str(n).strip() for n in names))


def matches(expected: str, document_id: int, source: str) -> bool:
    """Whether `expected` names this document: its id, its source, or the source's last
    path components (`contracts/acme.md` names `/drive/contracts/acme.md`)."""
    if expected.isdigit() and int(expected) == document_id:
        return True
    return source == expected or source.endswith("/" + expected.lstrip("/"))


def evaluate(
    session: Session,
    readable: Select[int],
    questions: Sequence[Question],
    vectors: npt.NDArray[np.float32],
    top_k: int,
) -> Evaluation:
    """Search each question in every mode and score the ranks of its expected documents."""
    relevant = _relevant(session, readable, questions)
    ranked = []
    found: dict[Mode, list[list[float]]] = {mode: [] for mode in Mode}
    for question, vector, wanted in zip(questions, vectors, relevant, strict=True):
        ranks: dict[Mode, int | None] = {}
        for mode in Mode:
            hits = search(session, readable, question.text, vector, top_k, mode)
            documents = [hit.document_id for hit in hits]
            anyone = frozenset().union(*wanted)
            ranks[mode] = next((i for i, d in enumerate(documents, 1) if d in anyone), None)
            found[mode].append([_recall(documents[:k], wanted) for k in _cutoffs(top_k)])
        ranked.append(Ranked(question.text, question.expected, ranks))
    metrics = {mode: _metrics(found[mode], ranked, mode, top_k) for mode in Mode}
    return Evaluation(top_k, metrics, ranked)


def _relevant(
    session: Session, readable: Select[int], questions: Sequence[Question]
) -> list[list[frozenset[int]]]:
    """Per question, the ids each expected name matches; a name that matches no readable
    document is refused (a typo would otherwise read as a retrieval miss)."""
    statement = select(KnowledgeDocument.id, KnowledgeDocument.source).where(
        KnowledgeDocument.collection_id.in_(readable)
    )
    documents = session.execute(statement).all()
    relevant = []
    for question in questions:
        wanted = []
        for name in question.expected:
            ids = {d.id for d in documents if matches(name, d.id, d.source)}
            if not ids:
                raise InvalidRequest(
                    f"no document {name!r} in the collection (question {question.text!r})",
                    param="expected",
                )
            wanted.append(frozenset(ids))
        relevant.append(wanted)
    return relevant


def _cutoffs(top_k: int) -> list[int]:
    return [k for k in CUTOFFS if k <= top_k]


def _recall(documents: list[int], wanted: list[frozenset[int]]) -> float:
    """The share of the expected names with a document among `documents`."""
    return sum(1 for ids in wanted if ids.intersection(documents)) / len(wanted)


def _metrics(
    recalls: list[list[float]], ranked: list[Ranked], mode: Mode, top_k: int
) -> dict[str, float]:
    metrics = {
        f"recall@{k}": float(np.mean([row[i] for row in recalls]))
        for i, k in enumerate(_cutoffs(top_k))
    }
    reciprocal = [1.0 / r if (r := q.ranks[mode]) is not None else 0.0 for q in ranked]
    metrics["mrr"] = float(np.mean(reciprocal))
    return metrics


def as_json(evaluation: Evaluation, collection: str) -> dict[str, Any]:
    """The evaluation as the CLI's --json prints it."""
    return {
        "collection": collection,
        "top_k": evaluation.top_k,
        "questions": len(evaluation.questions),
        "metrics": {mode.value: figures for mode, figures in evaluation.metrics.items()},
        "per_question": [
            {
                "question": q.question,
                "expected": list(q.expected),
                "ranks": {mode.value: rank for mode, rank in q.ranks.items()},
            }
            for q in evaluation.questions
        ],
    }
