"""/admin/audit: browse the trail, prove it intact, export it for a SIEM."""

from __future__ import annotations

import io
import time
from typing import Any

from fastapi import APIRouter, Request, Response

from inhouse.api.deps import app_state
from inhouse.api.guard import client_ip, guard, principal_of
from inhouse.audit.check import export, verify
from inhouse.audit.listing import AuditQuery, list_entries
from inhouse.auth.policy import Permission
from inhouse.ledger.periods import parse_since, parse_until

router = APIRouter(prefix="/admin/audit", dependencies=[guard(Permission.AUDIT_READ)])
MEDIA = {"jsonl": "application/x-ndjson", "csv": "text/csv"}


@router.get("")
def list_trail(
    request: Request,
    actor: str = "",
    action: str = "",
    target: str = "",
    since: str = "",
    until: str = "",
    before: int | None = None,
    limit: int = 50,
) -> dict[str, Any]:
    """Entries matching the filters, newest first; `next_before` asks for the next page."""
    now = time.time()
    query = AuditQuery(
        actor=actor,
        action=action,
        target=target,
        since=parse_since(since, now) if since else None,
        until=parse_until(until, now) if until else None,
    )
    with app_state(request).db.read() as session:
        return list_entries(session, query, before, limit).as_dict()


@router.get("/verify")
def verify_trail(request: Request) -> dict[str, Any]:
    state = app_state(request)
    result = verify(state.db, state.audit.key)
    return {
        "ok": result.ok,
        "entries": result.entries,
        "checkpoints": result.checkpoints,
        "first_bad_seq": result.first_bad_seq,
        "problem": result.problem,
    }


@router.get("/export")
def export_trail(request: Request, since: str = "7d", format: str = "jsonl") -> Response:
    """The entries since then, oldest first; the export itself is audited."""
    state = app_state(request)
    start = parse_since(since, time.time())
    out = io.StringIO()
    count = export(state.db, start, format, out)
    with state.db.write() as session:
        state.audit.record(
            session,
            principal_of(request).actor,
            "audit.export",
            format,
            {"since": start, "entries": count},
            client_ip(request),
        )
    return Response(out.getvalue(), media_type=MEDIA.get(format, "text/plain"))
