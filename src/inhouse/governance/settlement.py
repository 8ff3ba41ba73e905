"""A finished request as the write-behind queue writes it (and spills it, if it must)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from inhouse.store.tables import UsageRecord


@dataclass(frozen=True)
class Settlement:
    """Plain data, so that it can be spilled to a file and replayed."""

    reservation: str | None
    usage: dict[str, Any]  # the usage row (ledger.usage.usage_row)
    actor: str
    ip: str | None
    prompt_text: str = ""
    response_text: str = ""

    @property
    def detail(self) -> dict[str, Any]:
        """The api.request audit entry's detail: the usage row's facts of the request."""
        u = self.usage
        return {
            "request_id": u["request_id"],
            "model": u["model"],
            "status": u["status"],
            "prompt_tokens": u["prompt_tokens"],
            "completion_tokens": u["completion_tokens"],
            "latency_ms": round(u["latency_ms"], 2),
        }

    @property
    def tokens(self) -> int:
        return int(self.usage["prompt_tokens"]) + int(self.usage["completion_tokens"])

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Settlement:
        return cls(**record)


def unsettled(session: Session, batch: list[Settlement]) -> list[Settlement]:
    """The settlements whose usage row is not in the store yet (a replay may be repeated)."""
    ids = [s.usage["request_id"] for s in batch]
    query = select(UsageRecord.request_id).where(UsageRecord.request_id.in_(ids))
    written = set(session.scalars(query))
    return [s for s in batch if s.usage["request_id"] not in written]
