"""Chat completions kept for feedback and tuning, only when their caller opted in (`store:
true`) or the admin setting `tuning.keep_feedback_text` is on. They are written behind the
response by a write-behind queue: keeping one never delays or fails the answer."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from inhouse.store.db import Database
from inhouse.store.tables import StoredCompletion
from inhouse.store.writer import BatchWriter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeptCompletion:
    """What is kept of one completion: the prompt as sent and choice 0's answer."""

    completion_id: str
    user_id: int
    key_id: int | None
    model: str
    messages: list[dict[str, Any]]
    answer: str
    finish_reason: str | None  # None: cut short (the client left before it finished)
    metadata: dict[str, str] | None
    created_at: float


class CompletionKeeper:
    """Queues kept completions; one thread writes them in batches, one transaction each."""

    def __init__(self, db: Database) -> None:
        self.writer: BatchWriter[KeptCompletion] = BatchWriter(db, write_kept, "completions")

    def keep(self, completion: KeptCompletion) -> None:
        """Queue `completion` to be written (within ~50 ms); never raises."""
        try:
            self.writer.submit(completion)
        except Exception:
            log.exception("a completion could not be queued to be kept")

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until what was queued so far is written (True) or `timeout` passes."""
        return self.writer.flush(timeout)

    def close(self) -> None:
        """Write what is queued, then stop (server shutdown)."""
        self.writer.close()


def write_kept(session: Session, batch: list[KeptCompletion]) -> None:
    """Insert the batch's rows (in the writer's transaction)."""
    session.add_all(
        StoredCompletion(
            completion_id=c.completion_id,
            user_id=c.user_id,
            key_id=c.key_id,
            model=c.model,
            messages=c.messages,
            answer=c.answer,
            finish_reason=c.finish_reason,
            meta=c.metadata,
            created_at=c.created_at,
        )
        for c in batch
    )


def own_stored(session: Session, user_id: int, completion_id: str) -> StoredCompletion | None:
    """The user's stored completion with this id, locked (its feedback is written one at a
    time); None when there is none, or it is another user's."""
    return session.scalar(
        select(StoredCompletion)
        .where(StoredCompletion.completion_id == completion_id, StoredCompletion.user_id == user_id)
        .with_for_update()
    )
