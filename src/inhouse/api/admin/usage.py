"""/admin/usage: tokens, requests and latency by user, group, model, key or day; savings."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request

from inhouse.api.deps import app_state
from inhouse.api.guard import guard, principal_of
from inhouse.auth.policy import Permission, allows
from inhouse.ledger.periods import parse_since
from inhouse.ledger.prices import load_prices
from inhouse.ledger.reports import savings_report, usage_report

router = APIRouter(prefix="/admin/usage")


@router.get("", dependencies=[guard(Permission.USAGE_OWN)])
def usage(request: Request, by: str = "user", since: str = "30d") -> dict[str, Any]:
    """Everyone's usage for those allowed to see it; otherwise only the caller's own."""
    principal = principal_of(request)
    now = time.time()
    start = parse_since(since, now)
    only = None if allows(principal, Permission.USAGE_ALL) else principal.user_id
    with app_state(request).db.read() as session:
        rows = usage_report(session, start, now, by, user_id=only)
    return {"by": by, "since": start, "until": now, "rows": [r.as_dict() for r in rows]}


@router.get("/savings", dependencies=[guard(Permission.USAGE_ALL)])
def savings(request: Request, since: str = "30d") -> dict[str, Any]:
    state = app_state(request)
    now = time.time()
    start = parse_since(since, now)
    prices = load_prices(state.settings.costs.price_file)
    with state.db.read() as session:
        report = savings_report(session, start, now, prices, state.settings.costs)
    return report.as_dict()
