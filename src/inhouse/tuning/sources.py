"""Examples drawn from what inhouse already holds: rated answers and knowledge collections."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, String, and_, cast, or_, select
from sqlalchemy.orm import Session

from inhouse.auth.policy import Principal
from inhouse.config import KnowledgeSettings
from inhouse.errors import InvalidRequest, NotFound
from inhouse.knowledge.access import readable_ids
from inhouse.store.tables import Feedback, KnowledgeChunk, KnowledgeDocument
from inhouse.tuning.datasets import BadExample, Example, chat_example


def kept_feedback(min_rating: int) -> ColumnElement[bool]:
    """Condition on Feedback: rated `min_rating` or above, its prompt kept, and corrected or
    rated +1 (the rows `feedback_examples` turns into examples)."""
    if min_rating not in (-1, 1):
        raise InvalidRequest("min_rating must be 1 or -1", param="min_rating")
    return and_(
        Feedback.rating >= min_rating,
        Feedback.prompt.is_not(None),
        cast(Feedback.prompt, String) != "null",  # the ORM writes None as JSON null
        or_(Feedback.correction.is_not(None), Feedback.rating > 0),
    )


def feedback_examples(
    session: Session, since: float, min_rating: int, after_id: int = 0, upto_id: int | None = None
) -> list[Example]:
    """Chat examples from rated answers whose prompt was kept (tuning.keep_feedback_text):
    the prompt, then the corrected answer if one was given, else the answer itself when it
    was rated +1 (a poorly rated answer without a correction teaches nothing); optionally
    only rows with `after_id < id <= upto_id`."""
    query = select(Feedback).where(
        kept_feedback(min_rating), Feedback.updated_at >= since, Feedback.id > after_id
    )
    if upto_id is not None:
        query = query.where(Feedback.id <= upto_id)
    rows = session.scalars(query.order_by(Feedback.updated_at, Feedback.id))
    examples = []
    for row in rows:
        answer = row.correction if row.correction is not None else row.answer
        if answer is None or row.prompt is None:
            continue
        try:
            turns: list[Any] = [*row.prompt, {"role": "assistant", "content": answer}]
            examples.append(chat_example({"messages": turns}))
        except BadExample:  # a turn the chat format has no role for: left out
            continue
    return examples


def collection_examples(
    session: Session, principal: Principal, settings: KnowledgeSettings, collection: str
) -> list[Example]:
    """Text examples, one per passage of the collection, in document order; a collection the
    principal may not read is reported as missing, in the words used when it does not exist."""
    ids = list(session.scalars(readable_ids(principal, settings, [collection])))
    if not ids:
        raise NotFound(f"no collection named {collection!r}")
    query = (
        select(KnowledgeChunk.text)
        .join(KnowledgeDocument, KnowledgeDocument.id == KnowledgeChunk.document_id)
        .where(KnowledgeChunk.collection_id.in_(ids))
        .order_by(KnowledgeDocument.source, KnowledgeChunk.ordinal)
    )
    return [{"text": text} for text in session.scalars(query) if text.strip()]
