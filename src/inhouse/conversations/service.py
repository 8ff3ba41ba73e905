"""Conversations: create, list and search, read with their messages, change, delete; append
a user's message and store the answer generated for it (or replace the last one)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, exists, func, select
from sqlalchemy.orm import Session

from inhouse.errors import InvalidRequest, NotFound
from inhouse.store.db import Database
from inhouse.store.tables import Conversation, ConversationMessage

TITLE_CHARS = 60  # a new conversation's title: the start of its first message
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
USER, ASSISTANT = "user", "assistant"


class ConversationNotFound(NotFound):
    code = "conversation_not_found"


def new_conversation_id() -> str:
    return "conv_" + secrets.token_hex(12)


def title_of(text: str) -> str:
    """The first TITLE_CHARS characters of `text` on one line (an ellipsis when cut)."""
    line = " ".join(text.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


@dataclass(frozen=True)
class Changes:
    """A PATCH: None leaves a field as it is."""

    title: str | None = None
    model: str | None = None
    collections: list[str] | None = None


@dataclass(frozen=True)
class Turn:
    row_id: int
    role: str
    content: str


@dataclass(frozen=True)
class Thread:
    """A conversation as generation needs it: its settings and its turns, oldest first."""

    id: str
    model: str
    collections: list[str]
    turns: list[Turn]

    def to_answer_again(self) -> tuple[list[Turn], int | None]:
        """For regenerating: the turns up to the last user message, and the assistant
        message that answered it (the one to replace), if any."""
        last = max((i for i, t in enumerate(self.turns) if t.role == USER), default=None)
        if last is None:
            raise InvalidRequest("the conversation has no user message to answer")
        after = self.turns[last + 1 :]
        replaced = next((t.row_id for t in reversed(after) if t.role == ASSISTANT), None)
        return self.turns[: last + 1], replaced


class Conversations:
    """The conversations of each user, each call one transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(
        self, user_id: int, model: str, collections: Sequence[str], title: str = ""
    ) -> dict[str, Any]:
        now = time.time()
        row = Conversation(
            public_id=new_conversation_id(),
            user_id=user_id,
            title=title.strip(),
            model=model,
            collections=list(collections),
            created_at=now,
            updated_at=now,
        )
        with self.db.write() as session:
            session.add(row)
            session.flush()
            return conversation_view(row)

    def search(
        self, user_id: int, query: str = "", limit: int = DEFAULT_LIMIT
    ) -> list[dict[str, Any]]:
        """The user's conversations, most recently active first; with `query`, only those
        whose title or any message contains it (case-insensitive)."""
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidRequest(f"limit must be 1 to {MAX_LIMIT}", param="limit")
        statement = select(Conversation).where(Conversation.user_id == user_id)
        if query.strip():
            needle = query.strip().lower()
            in_messages = exists().where(
                ConversationMessage.conversation_id == Conversation.id,
                func.lower(ConversationMessage.content).contains(needle, autoescape=True),
            )
            in_title = func.lower(Conversation.title).contains(needle, autoescape=True)
            statement = statement.where(in_title | in_messages)
        statement = statement.order_by(Conversation.updated_at.desc(), Conversation.id.desc())
        with self.db.read() as session:
            rows = session.scalars(statement.limit(limit))
            return [conversation_view(row) for row in rows]

    def get(self, user_id: int, public_id: str) -> dict[str, Any]:
        """The conversation with its messages, oldest first."""
        with self.db.read() as session:
            row = _owned(session, user_id, public_id)
            messages = [message_view(m) for m in _message_rows(session, row.id)]
            return {**conversation_view(row), "messages": messages}

    def thread(self, user_id: int, public_id: str) -> Thread:
        with self.db.read() as session:
            row = _owned(session, user_id, public_id)
            turns = [Turn(m.id, m.role, m.content) for m in _message_rows(session, row.id)]
            return Thread(row.public_id, row.model, list(row.collections), turns)

    def change(self, user_id: int, public_id: str, changes: Changes) -> dict[str, Any]:
        with self.db.write() as session:
            row = _owned(session, user_id, public_id, lock=True)
            if changes.title is not None:
                row.title = changes.title.strip()
            if changes.model is not None:
                row.model = changes.model
            if changes.collections is not None:
                row.collections = list(changes.collections)
            row.updated_at = time.time()
            return conversation_view(row)

    def delete(self, user_id: int, public_id: str) -> None:
        """The conversation and every message of it."""
        with self.db.write() as session:
            row = _owned(session, user_id, public_id, lock=True)
            session.execute(
                delete(ConversationMessage).where(ConversationMessage.conversation_id == row.id)
            )
            session.delete(row)

    def append(self, user_id: int, public_id: str, role: str, content: str) -> dict[str, Any]:
        """A new last message; the first user message titles an untitled conversation."""
        with self.db.write() as session:
            row = _owned(session, user_id, public_id, lock=True)
            if role == USER and not row.title:
                row.title = title_of(content)
            message = _add(session, row, role, content)
            return message_view(message)

    def store_answer(
        self,
        user_id: int,
        public_id: str,
        answer: Answer,
        replaces: int | None = None,
    ) -> dict[str, Any] | None:
        """Store a generated answer: in place of the message `replaces` (a row id) when it is
        still there, else as the new last message. None when the conversation is gone."""
        with self.db.write() as session:
            row = _find(session, user_id, public_id, lock=True)
            if row is None:
                return None
            old = session.get(ConversationMessage, replaces) if replaces is not None else None
            if old is None or old.conversation_id != row.id or old.role != ASSISTANT:
                message = _add(session, row, ASSISTANT, answer.text, answer)
                return message_view(message)
            old.content, old.completion_id = answer.text, answer.completion_id
            old.citations, old.created_at = answer.citations, time.time()
            old.finish_reason = answer.finish_reason
            row.updated_at = old.created_at
            return message_view(old)


@dataclass(frozen=True)
class Answer:
    """What a generation produced, as it is stored."""

    text: str
    completion_id: str
    citations: list[dict[str, Any]] | None
    finish_reason: str  # stop | length | stopped (the client left) | error


def conversation_view(row: Conversation) -> dict[str, Any]:
    return {
        "id": row.public_id,
        "title": row.title,
        "model": row.model,
        "collections": list(row.collections or []),
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def message_view(row: ConversationMessage) -> dict[str, Any]:
    return {
        "ordinal": row.ordinal,
        "role": row.role,
        "content": row.content,
        "completion_id": row.completion_id,
        "citations": row.citations,
        "finish_reason": row.finish_reason,
        "created_at": row.created_at,
    }


def _find(
    session: Session, user_id: int, public_id: str, *, lock: bool = False
) -> Conversation | None:
    """The user's conversation; `lock` serializes writers of one conversation (PostgreSQL:
    two appends must not take the same ordinal; SQLite writers queue anyway)."""
    statement = select(Conversation).where(
        Conversation.public_id == public_id, Conversation.user_id == user_id
    )
    return session.scalar(statement.with_for_update() if lock else statement)


def _owned(session: Session, user_id: int, public_id: str, *, lock: bool = False) -> Conversation:
    row = _find(session, user_id, public_id, lock=lock)
    if row is None:
        raise ConversationNotFound(f"no conversation {public_id!r}")
    return row


def _message_rows(session: Session, conversation_id: int) -> list[ConversationMessage]:
    return list(
        session.scalars(
            select(ConversationMessage)
            .where(ConversationMessage.conversation_id == conversation_id)
            .order_by(ConversationMessage.ordinal)
        )
    )


def _add(
    session: Session,
    conversation: Conversation,
    role: str,
    content: str,
    answer: Answer | None = None,
) -> ConversationMessage:
    last = session.scalar(
        select(func.max(ConversationMessage.ordinal)).where(
            ConversationMessage.conversation_id == conversation.id
        )
    )
    message = ConversationMessage(
        conversation_id=conversation.id,
        ordinal=(last or 0) + 1,
        role=role,
        content=content,
        completion_id=answer.completion_id if answer else None,
        citations=answer.citations if answer else None,
        finish_reason=answer.finish_reason if answer else None,
        created_at=time.time(),
    )
    session.add(message)
    session.flush()
    conversation.updated_at = message.created_at
    return message
