"""The usage ledger: one row per model request, written when it ends, however it ends."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from inhouse.auth.policy import Principal
from inhouse.store.tables import UsageRecord

USAGE = cast(Table, UsageRecord.__table__)


@dataclass(frozen=True)
class Outcome:
    """How a request ended and what it consumed."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    latency_ms: float
    status: str  # "ok" | "aborted" | an error code

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def usage_row(
    principal: Principal, request_id: str, model: str, endpoint: str, outcome: Outcome
) -> dict[str, Any]:
    """The usage row of one finished request, ready for `write_usage`."""
    return {
        "ts": time.time(),
        "request_id": request_id,
        "user_id": principal.user_id,
        "key_id": principal.key_id,
        "group_id": principal.billing_group,
        "model": model,
        "endpoint": endpoint,
        "prompt_tokens": outcome.prompt_tokens,
        "completion_tokens": outcome.completion_tokens,
        "cached_tokens": outcome.cached_tokens,
        "latency_ms": outcome.latency_ms,
        "status": outcome.status,
    }


def write_usage(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert usage rows in one statement."""
    if rows:
        session.connection().execute(insert(USAGE), rows)
