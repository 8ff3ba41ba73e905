"""Admin report pages: usage and savings (charts + tables), the audit trail, doctor results.

Each page reads through the same domain functions as its API route (/admin/usage,
/admin/usage/savings, /admin/audit, /admin/doctor) under the same permission; charts are
SVG rendered here (inhouse.charts) and inlined, so the pages need no script to show them."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from markupsafe import Markup

from inhouse.api.deps import app_state
from inhouse.api.web.access import page_guard
from inhouse.api.web.render import page
from inhouse.audit.listing import AuditQuery, list_entries
from inhouse.auth.policy import Permission
from inhouse.charts import bar_chart, line_chart, stacked_bar_chart
from inhouse.doctor import run_checks
from inhouse.errors import InvalidRequest
from inhouse.ledger.periods import parse_since, parse_until
from inhouse.ledger.prices import load_prices
from inhouse.ledger.reports import SavingsReport, UsageRow, savings_report, usage_report

router = APIRouter(include_in_schema=False)
PERIODS = {"7d": "Last 7 days", "30d": "Last 30 days", "90d": "Last 90 days"}
DEFAULT_PERIOD = "30d"
CHART_ROWS = 30  # a chart shows the biggest rows; the table below it shows them all
AUDIT_PAGE = 50
FILTERS = ("actor", "action", "target", "since", "until")


@dataclass(frozen=True)
class Breakdown:
    """One section of the usage page: its charts and its table rows."""

    key: str
    heading: str
    charts: list[Markup]
    rows: list[UsageRow]


@router.get("/manage/usage", dependencies=[page_guard(Permission.USAGE_ALL)])
def usage_page(request: Request, period: str = DEFAULT_PERIOD) -> Response:
    """Usage by user, model and day, and the savings report, over the chosen period."""
    state = app_state(request)
    period = period if period in PERIODS else DEFAULT_PERIOD
    now = time.time()
    start = parse_since(period, now)
    prices = load_prices(state.settings.costs.price_file)
    with state.db.read() as session:
        by_user = usage_report(session, start, now, "user")
        by_model = usage_report(session, start, now, "model")
        by_day = usage_report(session, start, now, "day")
        savings = savings_report(session, start, now, prices, state.settings.costs)
    sections = [
        _breakdown("users", "By user", by_user),
        _breakdown("models", "By model", by_model),
        _daily(by_day, start, now),
    ]
    return page(
        request,
        "usage.html",
        "Usage and savings",
        periods=PERIODS,
        period=period,
        sections=sections,
        requests=sum(row.requests for row in by_user),
        tokens=sum(row.total_tokens for row in by_user),
        savings=savings,
        savings_chart=_savings_chart(savings),
        money=money,
    )


def money(amount: float) -> str:
    """An amount as people read it: 1,234.50; a fraction of a cent to two significant digits."""
    if abs(amount) >= 0.01 or amount == 0:
        return f"{amount:,.2f}"
    digits = max(2, 1 - math.floor(math.log10(abs(amount))))
    return f"{amount:.{digits}f}".rstrip("0")


def _breakdown(key: str, heading: str, rows: list[UsageRow]) -> Breakdown:
    """Tokens (prompt and completion stacked) and requests per user or model."""
    shown = rows[:CHART_ROWS]
    labels = [row.label for row in shown]
    what = heading.removeprefix("By ").lower()
    more = f" (top {CHART_ROWS})" if len(rows) > CHART_ROWS else ""
    tokens = stacked_bar_chart(
        f"Tokens by {what}{more}",
        labels,
        {
            "prompt": [row.prompt_tokens for row in shown],
            "completion": [row.completion_tokens for row in shown],
        },
        unit="tokens",
    )
    requests = bar_chart(
        f"Requests by {what}{more}", labels, [row.requests for row in shown], unit="requests"
    )
    return Breakdown(key, heading, [Markup(tokens), Markup(requests)], rows)


def _daily(rows: list[UsageRow], start: float, now: float) -> Breakdown:
    """Tokens and requests per UTC day, every day of the period (a quiet day is a zero)."""
    first = datetime.fromtimestamp(start, UTC).date()
    last = datetime.fromtimestamp(now, UTC).date()
    days = [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    seen = {row.label: row for row in rows}
    day_rows = [seen.get(day) for day in days]
    tokens = line_chart(
        "Tokens per day (UTC)",
        days,
        {
            "prompt": [row.prompt_tokens if row else 0 for row in day_rows],
            "completion": [row.completion_tokens if row else 0 for row in day_rows],
        },
        unit="tokens",
    )
    requests = line_chart(
        "Requests per day (UTC)",
        days,
        {"requests": [row.requests if row else 0 for row in day_rows]},
        unit="requests",
    )
    return Breakdown("days", "By day", [Markup(tokens), Markup(requests)], rows)


def _savings_chart(report: SavingsReport) -> Markup:
    """What the period's traffic would have cost at each API, and what it cost here."""
    total = report.total
    labels = [*report.apis, "here (this machine)"]
    values = [*(total.api_costs[api] for api in report.apis), total.local_cost]
    title = f"What this traffic costs, in {report.currency}"
    return Markup(bar_chart(title, labels, values, unit=report.currency))


@router.get("/manage/audit", dependencies=[page_guard(Permission.AUDIT_READ)])
def audit_page(
    request: Request,
    actor: str = "",
    action: str = "",
    target: str = "",
    since: str = "",
    until: str = "",
    before: int | None = None,
) -> Response:
    """The audit trail, newest first, filtered and paged like GET /admin/audit."""
    filters = {"actor": actor, "action": action, "target": target, "since": since, "until": until}
    now = time.time()
    try:
        query = AuditQuery(
            actor=actor.strip(),
            action=action.strip(),
            target=target.strip(),
            since=parse_since(since.strip(), now) if since.strip() else None,
            until=parse_until(until.strip(), now) if until.strip() else None,
        )
    except InvalidRequest as exc:
        return _audit(request, filters, [], None, None, str(exc), status_code=400)
    with app_state(request).db.read() as session:
        found = list_entries(session, query, before, AUDIT_PAGE)
    entries = [{**e, "detail": json.dumps(e["detail"], sort_keys=True)} for e in found.entries]
    older = None
    if found.next_before is not None:
        older = "?" + urlencode({**_set(filters), "before": found.next_before})
    return _audit(request, filters, entries, older, before, "")


def _audit(
    request: Request,
    filters: dict[str, str],
    entries: list[dict[str, Any]],
    older: str | None,
    before: int | None,
    problem: str,
    status_code: int = 200,
) -> Response:
    newest = None
    if before is not None:  # a later page links back to the first, with the same filters
        newest = ("?" + urlencode(_set(filters))) if _set(filters) else ""
    return page(
        request,
        "audit.html",
        "Audit trail",
        status_code=status_code,
        filters=filters,
        entries=entries,
        older=older,
        newest=newest,
        problem=problem,
    )


def _set(filters: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in filters.items() if value}


@router.get("/manage/system", dependencies=[page_guard(Permission.SYSTEM_READ)])
def system_page(request: Request) -> Response:
    """The doctor's checks (as /admin/doctor runs them), grouped by area, failures first."""
    checks = [asdict(check) for check in run_checks(app_state(request).settings, install=False)]
    order = {"fail": 0, "warn": 1, "ok": 2}
    counts = {status: sum(c["status"] == status for c in checks) for status in order}
    areas: dict[str, list[dict[str, Any]]] = {}
    for check in sorted(checks, key=lambda c: order.get(c["status"], 3)):
        areas.setdefault(check["area"], []).append(check)
    return page(
        request,
        "system.html",
        "System",
        areas=areas,
        counts=counts,
        checked_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
