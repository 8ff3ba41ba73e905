"""Browsing the audit trail: entries matching filters, newest first, a page at a time.

Pages are cut by `seq` (keyset), so a page stays the same while new entries arrive, and the
next page starts where the last one ended however deep the trail is."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from inhouse.audit.check import ENTRY_COLUMNS, _parse_detail
from inhouse.errors import InvalidRequest
from inhouse.store.tables import AuditEntry

MAX_LIMIT = 200


@dataclass(frozen=True)
class AuditQuery:
    """Which entries: by actor (a part: "root" finds "user:root ih_..."), action (a prefix:
    "key" finds key.create and key.revoke), target (a part), and time window.

    Text matches ignore case alike on SQLite and PostgreSQL; empty means any."""

    actor: str = ""
    action: str = ""
    target: str = ""
    since: float | None = None
    until: float | None = None  # exclusive


@dataclass(frozen=True)
class AuditPage:
    """Up to `limit` entries, newest first; `next_before` continues after them (None: no more)."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    next_before: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"entries": self.entries, "next_before": self.next_before}


def list_entries(
    session: Session, query: AuditQuery, before: int | None = None, limit: int = 50
) -> AuditPage:
    """The entries matching `query` with seq < `before`, newest first, at most `limit`."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be between 1 and {MAX_LIMIT}, not {limit}", param="limit")
    stmt = select(*ENTRY_COLUMNS)
    if before is not None:
        stmt = stmt.where(AuditEntry.seq < before)
    if query.actor:
        stmt = stmt.where(AuditEntry.actor.icontains(query.actor, autoescape=True))
    if query.action:
        stmt = stmt.where(AuditEntry.action.istartswith(query.action, autoescape=True))
    if query.target:
        stmt = stmt.where(AuditEntry.target.icontains(query.target, autoescape=True))
    if query.since is not None:
        stmt = stmt.where(AuditEntry.ts >= query.since)
    if query.until is not None:
        stmt = stmt.where(AuditEntry.ts < query.until)
    rows = session.execute(stmt.order_by(AuditEntry.seq.desc()).limit(limit + 1)).all()
    shown = rows[:limit]
    more = len(rows) > limit
    return AuditPage([_entry(row) for row in shown], shown[-1].seq if more else None)


def _entry(row: Row[Any]) -> dict[str, Any]:
    """One entry as the trail shows it: what happened, when (also in ISO 8601, UTC), its seq."""
    ts = float(row.ts)
    return {
        "seq": row.seq,
        "ts": ts,
        "time": datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds"),
        "actor": row.actor,
        "action": row.action,
        "target": row.target,
        "detail": _parse_detail(row.detail),
        "ip": row.ip,
    }
