"""Usage and savings reports: GROUP BY queries over the `usage` table, same SQL on both stores.

Both reports cover requests with `since <= ts < until`, optionally of one user only (what a
member may see of their own). Serving and fine-tuning are reported apart (`training.py`):
a usage report is of one or the other; the savings report prices both. Results are frozen
dataclasses whose `as_dict()` is plain JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, TypeAlias

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Row,
    Select,
    case,
    cast,
    desc,
    func,
    literal_column,
    select,
)
from sqlalchemy.orm import QueryableAttribute, Session

from inhouse.config import CostSettings
from inhouse.errors import InvalidRequest
from inhouse.ledger.costs import explain_hourly_cost, hourly_cost
from inhouse.ledger.prices import PriceTable
from inhouse.ledger.training import (
    TRAINING,
    TrainingRow,
    training_apis,
    training_rows,
    training_total,
)
from inhouse.store.tables import ApiKey, AuditEntry, Group, UsageRecord, User

DAY_S = 86400
GROUPINGS = ("user", "group", "model", "key", "day")
NOT_ERRORS = ("ok", "aborted")
NO_TEAM = "(no team)"
AnySelect: TypeAlias = Select[*tuple[Any, ...]]


@dataclass(frozen=True)
class UsageRow:
    """Totals of one user, team, model, key or UTC day; latencies cover every request."""

    label: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    total_tokens: int
    errors: int
    aborted: int
    avg_latency_ms: float
    max_latency_ms: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SavingsRow:
    """One team's traffic on one model: its price at each API, its cost here, the difference."""

    team: str
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    total_tokens: int
    api_costs: dict[str, float]
    local_cost: float
    savings: dict[str, float]  # per API: api cost - local cost (negative: the API was cheaper)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SavingsReport:
    """Rows by (team, model) plus their total, and what the figures rest on."""

    since: float
    until: float
    hours: float
    currency: str
    price_version: str
    price_as_of: str
    apis: list[str]  # the price table's order: the report's columns
    hourly_cost: float
    cost_basis: str
    machine_cost: float  # the machine over the whole window, busy or idle
    rows: list[SavingsRow]  # serving
    total: SavingsRow
    training_apis: list[str]  # the APIs that sell fine-tuning: the training rows' columns
    training: list[TrainingRow]
    training_total: TrainingRow

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Dimension:
    columns: tuple[ColumnElement[Any] | QueryableAttribute[Any], ...]
    join: Callable[[AnySelect], AnySelect]
    label: Callable[[Sequence[Any]], str]
    chronological: bool = False


def usage_report(
    session: Session,
    since: float,
    until: float,
    by: str,
    user_id: int | None = None,
    training: bool = False,
) -> list[UsageRow]:
    """Usage grouped `by` user/group/model/key/day: most tokens first (days: oldest first);
    of serving, or with `training` of fine-tuning jobs (a request: a job; prompt tokens: the
    tokens trained on; latency: its machine time)."""
    dimension = _dimension(by)
    keys = dimension.columns
    stmt = dimension.join(select(*keys, *_aggregates()).select_from(UsageRecord))
    stmt = _window(stmt, since, until, user_id, training).group_by(*keys)
    if dimension.chronological:
        stmt = stmt.order_by(*keys)
    else:
        stmt = stmt.order_by(desc("total_tokens"), *keys)
    return [_usage_row(dimension.label(row[: len(keys)]), row) for row in session.execute(stmt)]


def savings_report(
    session: Session,
    since: float,
    until: float,
    prices: PriceTable,
    costs: CostSettings,
    user_id: int | None = None,
) -> SavingsReport:
    """What the window's traffic would have cost at each API against what it cost here."""
    keys = (UsageRecord.group_id, Group.name, UsageRecord.model)
    stmt = select(*keys, *_aggregates()).select_from(UsageRecord)
    stmt = stmt.outerjoin(Group, Group.id == UsageRecord.group_id)
    stmt = _window(stmt, since, until, user_id).group_by(*keys)
    stmt = stmt.order_by(desc("total_tokens"), *keys)
    # the machine has cost money here only since inhouse went into service (its first audit
    # entry), not for the part of a "30d" window before it was installed
    in_service = session.scalar(select(func.min(AuditEntry.ts)))
    start = max(since, in_service) if in_service is not None else since
    hours = max(until - start, 0.0) / 3600
    machine_cost = hours * hourly_cost(costs)
    trained = training_rows(session, since, until, prices, hourly_cost(costs), user_id)
    tuning_apis = training_apis(prices)
    # the machine time jobs trained is theirs; serving shares the rest of the machine's cost
    training_everyone = (
        trained
        if user_id is None
        else training_rows(session, since, until, prices, hourly_cost(costs))
    )
    serving_cost = max(machine_cost - sum(row.local_cost for row in training_everyone), 0.0)
    share = _share_of_machine(session, since, until)
    apis = [price.name for price in prices.prices]
    rows = [
        _savings_row(_named(row[0], row[1], NO_TEAM), row[2], row, prices, serving_cost, share)
        for row in session.execute(stmt)
    ]
    return SavingsReport(
        since=since,
        until=until,
        hours=hours,
        currency=prices.currency,
        price_version=prices.version,
        price_as_of=prices.as_of.isoformat(),
        apis=apis,
        hourly_cost=hourly_cost(costs),
        cost_basis=explain_hourly_cost(costs),
        machine_cost=machine_cost,
        rows=rows,
        total=_total(rows, apis),
        training_apis=tuning_apis,
        training=trained,
        training_total=training_total(trained, tuning_apis),
    )


def _aggregates() -> list[ColumnElement[Any]]:
    usage = UsageRecord
    prompt = func.coalesce(func.sum(usage.prompt_tokens), 0)
    completion = func.coalesce(func.sum(usage.completion_tokens), 0)
    return [
        func.count().label("requests"),
        prompt.label("prompt_tokens"),
        completion.label("completion_tokens"),
        func.coalesce(func.sum(usage.cached_tokens), 0).label("cached_tokens"),
        (prompt + completion).label("total_tokens"),
        func.sum(case((usage.status.not_in(NOT_ERRORS), 1), else_=0)).label("errors"),
        func.sum(case((usage.status == "aborted", 1), else_=0)).label("aborted"),
        func.avg(usage.latency_ms).label("avg_latency_ms"),
        func.max(usage.latency_ms).label("max_latency_ms"),
    ]


def _window(
    stmt: AnySelect, since: float, until: float, user_id: int | None, training: bool = False
) -> AnySelect:
    stmt = stmt.where(UsageRecord.ts >= since, UsageRecord.ts < until)
    is_training = UsageRecord.endpoint == TRAINING
    stmt = stmt.where(is_training if training else ~is_training)
    if user_id is not None:
        stmt = stmt.where(UsageRecord.user_id == user_id)
    return stmt


def _dimension(by: str) -> _Dimension:
    if by == "user":
        return _Dimension(
            (UsageRecord.user_id, User.name),
            lambda s: s.outerjoin(User, User.id == UsageRecord.user_id),
            lambda key: _named(key[0], key[1], "(no user)"),
        )
    if by == "group":
        return _Dimension(
            (UsageRecord.group_id, Group.name),
            lambda s: s.outerjoin(Group, Group.id == UsageRecord.group_id),
            lambda key: _named(key[0], key[1], NO_TEAM),
        )
    if by == "key":
        return _Dimension(
            (UsageRecord.key_id, ApiKey.public_id, ApiKey.name),
            lambda s: s.outerjoin(ApiKey, ApiKey.id == UsageRecord.key_id),
            _key_label,
        )
    if by == "model":
        return _Dimension((UsageRecord.model,), lambda s: s, lambda key: str(key[0]))
    if by == "day":
        # floor, not CAST: PostgreSQL rounds a float cast to integer, SQLite truncates it; the
        # divisor is inlined so SELECT and GROUP BY are the same expression to PostgreSQL
        day = cast(func.floor(UsageRecord.ts / literal_column(str(DAY_S))), BigInteger)
        return _Dimension((day,), lambda s: s, _day_label, chronological=True)
    raise InvalidRequest(f"by: {by!r} is not one of {', '.join(GROUPINGS)}", param="by")


def _named(subject_id: int | None, name: str | None, nobody: str) -> str:
    """The name; `#id` when the row it points at was deleted; `nobody` when there is no id."""
    if subject_id is None:
        return nobody
    return name if name is not None else f"#{subject_id}"


def _key_label(key: Sequence[Any]) -> str:
    key_id, public_id, name = key
    if key_id is None:
        return "(no key)"
    if public_id is None:
        return f"#{key_id}"
    return f"{public_id} ({name})" if name else str(public_id)


def _day_label(key: Sequence[Any]) -> str:
    return datetime.fromtimestamp(int(key[0]) * DAY_S, UTC).date().isoformat()


def _usage_row(label: str, row: Row[Any]) -> UsageRow:
    return UsageRow(
        label=label,
        requests=int(row.requests),
        prompt_tokens=int(row.prompt_tokens),
        completion_tokens=int(row.completion_tokens),
        cached_tokens=int(row.cached_tokens),
        total_tokens=int(row.total_tokens),
        errors=int(row.errors),
        aborted=int(row.aborted),
        avg_latency_ms=float(row.avg_latency_ms),
        max_latency_ms=float(row.max_latency_ms),
    )


def _share_of_machine(session: Session, since: float, until: float) -> Callable[[int, int], float]:
    """A row's fraction of the machine: its tokens over everyone's in the window (not just
    the filtered user's), or its requests when no request carried a token."""
    everyone = select(
        func.count(),
        func.coalesce(func.sum(UsageRecord.prompt_tokens + UsageRecord.completion_tokens), 0),
    )
    requests, tokens = (
        int(n) for n in session.execute(_window(everyone, since, until, None)).one()
    )
    if tokens:
        return lambda row_tokens, _: row_tokens / tokens
    if requests:
        return lambda _, row_requests: row_requests / requests
    return lambda _tokens, _requests: 0.0


def _savings_row(
    team: str,
    model: str,
    row: Row[Any],
    prices: PriceTable,
    machine_cost: float,
    share: Callable[[int, int], float],
) -> SavingsRow:
    usage = _usage_row(team, row)
    api_costs = {
        price.name: price.cost(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens)
        for price in prices.prices
    }
    local = machine_cost * share(usage.total_tokens, usage.requests)
    return SavingsRow(
        team=team,
        model=model,
        requests=usage.requests,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cached_tokens=usage.cached_tokens,
        total_tokens=usage.total_tokens,
        api_costs=api_costs,
        local_cost=local,
        savings={name: cost - local for name, cost in api_costs.items()},
    )


def _total(rows: list[SavingsRow], apis: list[str]) -> SavingsRow:
    api_costs = {name: sum(row.api_costs[name] for row in rows) for name in apis}
    local = sum(row.local_cost for row in rows)
    return SavingsRow(
        team="(total)",
        model="(all)",
        requests=sum(row.requests for row in rows),
        prompt_tokens=sum(row.prompt_tokens for row in rows),
        completion_tokens=sum(row.completion_tokens for row in rows),
        cached_tokens=sum(row.cached_tokens for row in rows),
        total_tokens=sum(row.total_tokens for row in rows),
        api_costs=api_costs,
        local_cost=local,
        savings={name: cost - local for name, cost in api_costs.items()},
    )
