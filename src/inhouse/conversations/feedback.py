"""Feedback on answers: a rating (+1 / -1) and optionally a better answer, one per user and
completion (given again, it replaces the earlier one). Only the user's own completions can be
rated: an answer in one of their conversations, or a chat completion of theirs that was
stored (`store: true`, or the setting `tuning.keep_feedback_text`). Copies of the prompt and
the answer are kept when the user opted in (a stored completion) or when that setting is on;
every feedback is audited, without its text."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from inhouse.audit.trail import AuditTrail
from inhouse.errors import InvalidRequest, NotFound
from inhouse.store.db import Database
from inhouse.store.tables import Conversation, ConversationMessage, Feedback

from .service import ASSISTANT, MAX_LIMIT
from .stored import own_stored

MAX_CORRECTION_CHARS = 32_768


class CompletionNotFound(NotFound):
    code = "completion_not_found"


@dataclass(frozen=True)
class Rating:
    """One user's feedback on one completion."""

    completion_id: str
    rating: int
    correction: str | None = None


@dataclass(frozen=True)
class Rated:
    """What a feedback row keeps of the rated completion (text only when opted in)."""

    model: str
    prompt: list[dict[str, Any]] | None = None
    answer: str | None = None


class FeedbackBook:
    """Feedback as its users give and read it, each call one transaction."""

    def __init__(self, db: Database, audit: AuditTrail, *, keep_text: bool) -> None:
        self.db = db
        self.audit = audit
        self.keep_text = keep_text

    def record(self, user_id: int, actor: str, rating: Rating, ip: str | None) -> dict[str, Any]:
        """Store (or replace) the user's feedback on one of their own answers, audited."""
        _check(rating)
        with self.db.write() as session:
            rated = self._rated(session, user_id, rating.completion_id)
            row = session.scalar(
                select(Feedback).where(
                    Feedback.completion_id == rating.completion_id, Feedback.user_id == user_id
                )
            )
            now, replaced = time.time(), row is not None
            if row is None:
                row = Feedback(completion_id=rating.completion_id, user_id=user_id, created_at=now)
                session.add(row)
            row.model, row.rating = rated.model, rating.rating
            row.correction, row.updated_at = rating.correction, now
            row.prompt, row.answer = rated.prompt, rated.answer
            session.flush()
            detail = {
                "rating": rating.rating,
                "correction": rating.correction is not None,
                "model": rated.model,
                "replaced": replaced,
            }
            self.audit.record(session, actor, "feedback.record", rating.completion_id, detail, ip)
            return feedback_view(row)

    def _rated(self, session: Session, user_id: int, completion_id: str) -> Rated:
        """The user's completion: an answer in their conversations (its text only with
        keep_text), else a stored completion of theirs (its text: they opted in)."""
        found = _own_answer(session, user_id, completion_id)
        if found is not None:
            conversation, answer = found
            if not self.keep_text:
                return Rated(conversation.model)
            return Rated(conversation.model, _prompt(session, answer), answer.content)
        stored = own_stored(session, user_id, completion_id)
        if stored is None:
            raise CompletionNotFound(f"no completion {completion_id!r} of yours")
        return Rated(stored.model, [_turn(m) for m in stored.messages], stored.answer)

    def mine(self, user_id: int, limit: int = 50) -> list[dict[str, Any]]:
        """The user's own feedback, newest first."""
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidRequest(f"limit must be 1 to {MAX_LIMIT}", param="limit")
        with self.db.read() as session:
            rows = session.scalars(
                select(Feedback)
                .where(Feedback.user_id == user_id)
                .order_by(Feedback.updated_at.desc(), Feedback.id.desc())
                .limit(limit)
            )
            return [feedback_view(row) for row in rows]


def feedback_view(row: Feedback) -> dict[str, Any]:
    return {
        "completion_id": row.completion_id,
        "rating": row.rating,
        "correction": row.correction,
        "model": row.model,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def _check(rating: Rating) -> None:
    if rating.rating not in (1, -1):
        raise InvalidRequest("rating must be 1 or -1", param="rating")
    if rating.correction is not None and len(rating.correction) > MAX_CORRECTION_CHARS:
        raise InvalidRequest(
            f"a correction is at most {MAX_CORRECTION_CHARS} characters", param="correction"
        )


def _own_answer(
    session: Session, user_id: int, completion_id: str
) -> tuple[Conversation, ConversationMessage] | None:
    """The assistant message with this completion id in one of the user's conversations;
    the conversation is locked, so one user's feedback on it is written one at a time;
    None when there is none."""
    found = session.execute(
        select(Conversation, ConversationMessage)
        .join(ConversationMessage, ConversationMessage.conversation_id == Conversation.id)
        .where(
            Conversation.user_id == user_id,
            ConversationMessage.completion_id == completion_id,
            ConversationMessage.role == ASSISTANT,
        )
        .with_for_update(of=Conversation)
    ).first()
    return None if found is None else (found[0], found[1])


def _prompt(session: Session, answer: ConversationMessage) -> list[dict[str, Any]]:
    """The turns that led to the answer, as chat messages."""
    rows = session.scalars(
        select(ConversationMessage)
        .where(
            ConversationMessage.conversation_id == answer.conversation_id,
            ConversationMessage.ordinal < answer.ordinal,
        )
        .order_by(ConversationMessage.ordinal)
    )
    return [{"role": m.role, "content": m.content} for m in rows]


def _turn(message: dict[str, Any]) -> dict[str, Any]:
    """A message as sent to /v1/chat/completions, as a chat turn: role (developer: system,
    its older name) and text (a list content's parts joined; None where it has no text, e.g.
    a bare tool call, which leaves the example out of a data set)."""
    role, content = message.get("role"), message.get("content")
    if isinstance(content, list):
        content = "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return {"role": "system" if role == "developer" else role, "content": content}
