"""Fine-tuning in the ledger: each job's usage row, priced at APIs that sell fine-tuning.

A finished job writes one usage row (`tuning/runner.py`): endpoint `fine_tuning`, model the
tuned model's name, `prompt_tokens` the tokens trained on (all epochs), `latency_ms` the
machine time it trained. Reports keep these rows apart from serving: training is paid once
per version, serving per request. What the same training would have cost at an API is
priced from the succeeded jobs only (a failed job's tokens would not have been billed
there, so the savings are on the conservative side); what it cost here is its machine time
at the machine's hourly cost, failed jobs included.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import case, desc, func, select
from sqlalchemy.orm import Session

from inhouse.ledger.prices import PriceTable
from inhouse.store.tables import UsageRecord, User

TRAINING = "fine_tuning"  # the usage row's endpoint
MS_PER_HOUR = 3_600_000


@dataclass(frozen=True)
class TrainingRow:
    """One user's fine-tuning jobs of one tuned model, priced at each API that sells it."""

    user: str
    model: str
    jobs: int
    trained_tokens: int  # every job's
    billable_tokens: int  # the succeeded jobs': what an API would have billed
    train_hours: float
    api_costs: dict[str, float]  # per API that sells fine-tuning
    local_cost: float
    savings: dict[str, float]  # per API: api cost - local cost

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def training_apis(prices: PriceTable) -> list[str]:
    """The APIs of the price table that sell fine-tuning, in the table's order."""
    return [price.name for price in prices.prices if price.training_per_m is not None]


def training_rows(
    session: Session,
    since: float,
    until: float,
    prices: PriceTable,
    hourly_cost: float,
    user_id: int | None = None,
) -> list[TrainingRow]:
    """The window's fine-tuning by (user, tuned model), most tokens first."""
    tokens = func.coalesce(func.sum(UsageRecord.prompt_tokens), 0)
    billable = func.sum(case((UsageRecord.status == "ok", UsageRecord.prompt_tokens), else_=0))
    keys = (UsageRecord.user_id, User.name, UsageRecord.model)
    stmt = (
        select(
            *keys,
            func.count().label("jobs"),
            tokens.label("tokens"),
            func.coalesce(billable, 0).label("billable"),
            func.coalesce(func.sum(UsageRecord.latency_ms), 0).label("ms"),
        )
        .select_from(UsageRecord)
        .outerjoin(User, User.id == UsageRecord.user_id)
        .where(UsageRecord.endpoint == TRAINING)
        .where(UsageRecord.ts >= since, UsageRecord.ts < until)
    )
    if user_id is not None:
        stmt = stmt.where(UsageRecord.user_id == user_id)
    stmt = stmt.group_by(*keys).order_by(desc("tokens"), *keys)
    rows = []
    for row in session.execute(stmt):
        user = _user(row[0], row[1])
        hours = float(row.ms) / MS_PER_HOUR
        api_costs = {
            price.name: cost
            for price in prices.prices
            if (cost := price.training_cost(int(row.billable))) is not None
        }
        local = hours * hourly_cost
        rows.append(
            TrainingRow(
                user=user,
                model=str(row[2]),
                jobs=int(row.jobs),
                trained_tokens=int(row.tokens),
                billable_tokens=int(row.billable),
                train_hours=hours,
                api_costs=api_costs,
                local_cost=local,
                savings={name: cost - local for name, cost in api_costs.items()},
            )
        )
    return rows


def training_total(rows: list[TrainingRow], apis: list[str]) -> TrainingRow:
    api_costs = {name: sum(row.api_costs.get(name, 0.0) for row in rows) for name in apis}
    local = sum(row.local_cost for row in rows)
    return TrainingRow(
        user="(total)",
        model="(all)",
        jobs=sum(row.jobs for row in rows),
        trained_tokens=sum(row.trained_tokens for row in rows),
        billable_tokens=sum(row.billable_tokens for row in rows),
        train_hours=sum(row.train_hours for row in rows),
        api_costs=api_costs,
        local_cost=local,
        savings={name: cost - local for name, cost in api_costs.items()},
    )


def _user(user_id: int | None, name: str | None) -> str:
    if user_id is None:
        return "(operator)"
    return name if name is not None else f"#{user_id}"
