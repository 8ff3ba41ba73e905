"""Usage and savings reports add up the way an admin would by hand, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from inhouse.config import CostSettings
from inhouse.errors import InvalidRequest
from inhouse.ledger.prices import PriceTable, load_prices
from inhouse.ledger.reports import UsageRow, savings_report, usage_report
from inhouse.store.db import Database
from inhouse.store.tables import ApiKey, Group, UsageRecord, User

DAY = 86400.0
T0 = 20_000 * DAY  # midnight UTC, 2024-10-04
SINCE, UNTIL = T0, T0 + 2 * DAY
GONE_USER, GONE_KEY, GONE_GROUP = 999, 888, 777

PRICES = """
version = "test-1"
as_of = 2025-01-01
currency = "USD"

[[model]]
name = "dear"
provider = "Vendor A"
input = 10.0
cached_input = 1.0
output = 30.0
as_of = 2025-01-01

[[model]]
name = "cheap"
provider = "Vendor B"
input = 1.0
output = 2.0
as_of = 2025-01-02
"""


@dataclass
class Seeded:
    alice: int
    bob: int


def usage(
    ts: float, user_id: int | None, model: str, prompt: int, completion: int, **more: object
) -> UsageRecord:
    fields: dict[str, object] = {
        "key_id": None,
        "group_id": None,
        "cached_tokens": 0,
        "latency_ms": 10.0,
        "status": "ok",
        **more,
    }
    return UsageRecord(
        ts=ts,
        request_id=f"req-{ts}-{user_id}",
        user_id=user_id,
        model=model,
        endpoint="chat",
        prompt_tokens=prompt,
        completion_tokens=completion,
        **fields,
    )


@pytest.fixture
def seeded(db: Database) -> Seeded:
    """Alice (team research, key "laptop") on llama; Bob (no team, no key) on qwen; and a
    user, key and team deleted since; plus traffic just outside the window."""
    with db.write() as s:
        alice = User(name="alice", role="member", created_at=0.0)
        bob = User(name="bob", role="member", created_at=0.0)
        research = Group(name="research", created_at=0.0)
        s.add_all([alice, bob, research])
        s.flush()
        key = ApiKey(
            public_id="ih_alice1",
            key_hash="h" * 64,
            user_id=alice.id,
            name="laptop",
            created_at=0.0,
        )
        s.add(key)
        s.flush()
        mine = {"key_id": key.id, "group_id": research.id}
        s.add_all(
            [
                usage(
                    T0 + 10,
                    alice.id,
                    "llama",
                    1_000_000,
                    200_000,
                    cached_tokens=400_000,
                    latency_ms=100.0,
                    **mine,
                ),
                usage(T0 + 20, alice.id, "llama", 500_000, 100_000, latency_ms=300.0, **mine),
                usage(
                    T0 + DAY + 5, bob.id, "qwen", 300_000, 50_000, latency_ms=50.0, status="aborted"
                ),
                usage(T0 + DAY + 6, bob.id, "qwen", 0, 0, latency_ms=5.0, status="overloaded"),
                usage(
                    T0 + 30,
                    GONE_USER,
                    "llama",
                    100_000,
                    10_000,
                    latency_ms=20.0,
                    key_id=GONE_KEY,
                    group_id=GONE_GROUP,
                ),
                usage(T0 - 1, alice.id, "llama", 7_000_000, 7_000_000, **mine),
                usage(UNTIL, alice.id, "llama", 7_000_000, 7_000_000, **mine),
            ]
        )
        return Seeded(alice.id, bob.id)


def report(db: Database, by: str, user_id: int | None = None) -> list[UsageRow]:
    with db.read() as session:
        return usage_report(session, SINCE, UNTIL, by, user_id=user_id)


def labels(rows: list[UsageRow]) -> list[str]:
    return [row.label for row in rows]


def test_by_user_sums_tokens_counts_errors_and_latency(db: Database, seeded: Seeded) -> None:
    rows = report(db, "user")
    assert labels(rows) == ["alice", "bob", f"#{GONE_USER}"]  # most tokens first
    alice, bob, gone = rows
    assert alice == UsageRow(
        label="alice",
        requests=2,
        prompt_tokens=1_500_000,
        completion_tokens=300_000,
        cached_tokens=400_000,
        total_tokens=1_800_000,
        errors=0,
        aborted=0,
        avg_latency_ms=200.0,
        max_latency_ms=300.0,
    )
    assert (bob.requests, bob.total_tokens, bob.errors, bob.aborted) == (2, 350_000, 1, 1)
    assert bob.avg_latency_ms == pytest.approx(27.5)
    assert (gone.requests, gone.total_tokens) == (1, 110_000)


def test_window_includes_since_and_excludes_until(db: Database, seeded: Seeded) -> None:
    assert sum(row.requests for row in report(db, "user")) == 5


@pytest.mark.parametrize(
    ("by", "expected"),
    [
        ("group", [("research", 1_800_000), ("(no team)", 350_000), (f"#{GONE_GROUP}", 110_000)]),
        (
            "key",
            [("ih_alice1 (laptop)", 1_800_000), ("(no key)", 350_000), (f"#{GONE_KEY}", 110_000)],
        ),
        ("model", [("llama", 1_910_000), ("qwen", 350_000)]),
        ("day", [("2024-10-04", 1_910_000), ("2024-10-05", 350_000)]),
    ],
)
def test_other_groupings(
    db: Database, seeded: Seeded, by: str, expected: list[tuple[str, int]]
) -> None:
    assert [(row.label, row.total_tokens) for row in report(db, by)] == expected


def test_days_are_utc_days_listed_oldest_first(db: Database, seeded: Seeded) -> None:
    with db.write() as s:
        s.add(usage(T0 + DAY + 100, seeded.bob, "qwen", 9_000_000, 0))
        s.add(usage(T0 + DAY - 0.25, seeded.bob, "qwen", 1, 0))  # a quarter second to midnight
    rows = report(db, "day")
    assert [(row.label, row.total_tokens) for row in rows] == [
        ("2024-10-04", 1_910_001),
        ("2024-10-05", 9_350_000),
    ]


def test_a_member_sees_only_their_own_usage(db: Database, seeded: Seeded) -> None:
    assert labels(report(db, "model", user_id=seeded.bob)) == ["qwen"]
    assert labels(report(db, "user", user_id=seeded.bob)) == ["bob"]


def test_unknown_grouping_is_refused(db: Database, seeded: Seeded) -> None:
    with pytest.raises(InvalidRequest, match="'colour' is not one of user, group, model"):
        report(db, "colour")


def test_empty_window_gives_no_rows(db: Database) -> None:
    assert report(db, "user") == []


@pytest.fixture
def prices(tmp_path: Path) -> PriceTable:
    path = tmp_path / "prices.toml"
    path.write_text(PRICES)
    return load_prices(path)


# 48 h at $0.25/h; the window's tokens: 1_800_000 + 350_000 + 110_000
MACHINE = CostSettings(machine_usd_per_hour=0.25)
MACHINE_COST, ALL_TOKENS = 12.0, 2_260_000


def test_savings_by_team_and_model_match_hand_figures(
    db: Database, seeded: Seeded, prices: PriceTable
) -> None:
    with db.read() as session:
        result = savings_report(session, SINCE, UNTIL, prices, MACHINE)
    assert [(r.team, r.model) for r in result.rows] == [
        ("research", "llama"),
        ("(no team)", "qwen"),
        (f"#{GONE_GROUP}", "llama"),
    ]
    research = result.rows[0]
    # dear: 1.1M uncached x $10 + 0.4M cached x $1 + 0.3M out x $30; cheap bills cache as input
    assert research.api_costs == pytest.approx({"dear": 11 + 0.4 + 9, "cheap": 1.5 + 0.6})
    assert research.local_cost == pytest.approx(MACHINE_COST * 1_800_000 / ALL_TOKENS)
    assert research.savings["dear"] == pytest.approx(20.4 - research.local_cost)
    assert research.savings["cheap"] == pytest.approx(2.1 - research.local_cost)
    assert result.hours == pytest.approx(48)
    assert result.machine_cost == pytest.approx(MACHINE_COST)
    assert result.total.requests == 5
    assert result.total.api_costs == pytest.approx({"dear": 20.4 + 4.5 + 1.3, "cheap": 2.62})
    assert result.total.local_cost == pytest.approx(MACHINE_COST)  # every token is in a row
    assert result.apis == ["dear", "cheap"]
    assert (result.price_version, result.price_as_of) == ("test-1", "2025-01-01")
    assert json.loads(json.dumps(result.as_dict()))["total"]["requests"] == 5


def test_a_member_is_charged_their_share_of_the_machine_not_all_of_it(
    db: Database, seeded: Seeded, prices: PriceTable
) -> None:
    with db.read() as session:
        result = savings_report(session, SINCE, UNTIL, prices, MACHINE, user_id=seeded.bob)
    assert [(r.team, r.model) for r in result.rows] == [("(no team)", "qwen")]
    assert result.total.local_cost == pytest.approx(MACHINE_COST * 350_000 / ALL_TOKENS)
    assert result.total.api_costs == pytest.approx({"dear": 3 + 1.5, "cheap": 0.3 + 0.1})


def test_an_idle_machine_still_costs_money(db: Database, prices: PriceTable) -> None:
    costs = CostSettings(hardware_usd=7300, amortization_months=10, watts=0)  # $1/h
    with db.read() as session:
        result = savings_report(session, SINCE, UNTIL, prices, costs)
    assert result.rows == []
    assert result.machine_cost == pytest.approx(48.0)
    assert result.total.local_cost == 0
    assert "7,300 hardware" in result.cost_basis


def test_the_machine_costs_only_since_inhouse_went_into_service(
    db: Database, prices: PriceTable
) -> None:
    from inhouse.audit.trail import AuditTrail

    trail = AuditTrail(b"k" * 32)
    trail.ensure_head(db)
    with db.write() as session:
        entry = trail.record(session, "cli:root", "user.create", "alice")
    costs = CostSettings(hardware_usd=7300, amortization_months=10, watts=0)  # $1/h
    with db.read() as session:
        result = savings_report(session, entry.ts - 30 * 86400, entry.ts + 7200, prices, costs)
    assert result.hours == pytest.approx(2.0, abs=0.01)  # not the 30 days asked for
    assert result.machine_cost == pytest.approx(2.0, abs=0.01)
