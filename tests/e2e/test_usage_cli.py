"""`inhouse usage` and `inhouse usage savings` as an admin runs them on a seeded home."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from inhouse.cli.usage import usage_app
from inhouse.store.db import open_database
from inhouse.store.tables import Group, UsageRecord, User

HOUR = 3600.0
PRICES = """
version = "cli-test"
as_of = 2025-03-01
currency = "USD"

[[model]]
name = "dear"
provider = "Vendor A"
input = 10.0
output = 30.0
as_of = 2025-03-01

[[model]]
name = "cheap"
provider = "Vendor B"
input = 1.0
output = 2.0
as_of = 2025-03-01
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A home whose store holds carol's and dave's traffic of the last hours, and older."""
    home = tmp_path / "home"
    db = open_database(f"sqlite:///{home}/inhouse.db")
    now = time.time()
    with db.write() as s:
        carol = User(name="carol", role="member", created_at=0.0)
        dave = User(name="dave", role="member", created_at=0.0)
        team = Group(name="support", created_at=0.0)
        s.add_all([carol, dave, team])
        s.flush()
        for i, (user, ts, prompt, completion, status) in enumerate(
            [
                (carol, now - 2 * HOUR, 600_000, 400_000, "ok"),
                (carol, now - HOUR, 200_000, 100_000, "ok"),
                (dave, now - HOUR, 50_000, 0, "overloaded"),
                (dave, now - 40 * 24 * HOUR, 5_000_000, 0, "ok"),  # outside 30 days
            ]
        ):
            s.add(
                UsageRecord(
                    ts=ts,
                    request_id=f"r{i}",
                    user_id=user.id,
                    key_id=None,
                    group_id=team.id if user is carol else None,
                    model="llama",
                    endpoint="chat",
                    prompt_tokens=prompt,
                    completion_tokens=completion,
                    latency_ms=120.0,
                    status=status,
                )
            )
    db.close()
    return home


def run(*args: str) -> Result:
    return CliRunner().invoke(usage_app, list(args))


def ok_json(*args: str) -> Any:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_usage_by_user_is_a_table_of_names(home: Path) -> None:
    result = run("--home", str(home), "--by", "user", "--since", "30d")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1].split() == [
        "USER",
        "REQUESTS",
        "PROMPT",
        "COMPLETION",
        "CACHED",
        "ERRORS",
        "AVG",
        "MS",
    ]
    assert lines[2].split() == ["carol", "2", "800,000", "500,000", "0", "0", "120"]
    assert lines[3].split() == ["dave", "1", "50,000", "0", "0", "1", "120"]


def test_usage_json_carries_the_numbers(home: Path) -> None:
    body = ok_json("--home", str(home), "--by", "user")
    carol, dave = body["rows"]
    assert (carol["label"], carol["requests"], carol["total_tokens"]) == ("carol", 2, 1_300_000)
    assert (dave["label"], dave["errors"]) == ("dave", 1)
    wider = ok_json("--home", str(home), "--since", "60d")
    assert [row["total_tokens"] for row in wider["rows"]] == [5_050_000, 1_300_000]


def test_unknown_grouping_exits_2_with_a_message(home: Path) -> None:
    result = run("--home", str(home), "--by", "colour")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: by: 'colour' is not one of")


def test_savings_prices_the_traffic_at_each_api(home: Path, tmp_path: Path) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text(PRICES)
    config = tmp_path / "inhouse.toml"
    config.write_text(f'[costs]\nmachine_usd_per_hour = 0.5\nprice_file = "{prices}"\n')
    body = ok_json("savings", "--home", str(home), "--config", str(config), "--since", "30d")
    assert body["apis"] == ["dear", "cheap"]
    assert [(row["team"], row["model"]) for row in body["rows"]] == [
        ("support", "llama"),
        ("(no team)", "llama"),
    ]
    support = body["rows"][0]
    # 800k in, 500k out: dear 8 + 15, cheap 0.8 + 1
    assert support["api_costs"] == pytest.approx({"dear": 23.0, "cheap": 1.8})
    assert body["hourly_cost"] == 0.5
    assert body["machine_cost"] == pytest.approx(0.5 * 30 * 24, rel=1e-3)
    assert body["total"]["local_cost"] == pytest.approx(body["machine_cost"])


def test_savings_table_has_a_column_per_api_and_a_footer(home: Path) -> None:
    result = run("savings", "--home", str(home))
    assert result.exit_code == 0, result.output
    header = result.stdout.splitlines()[1]
    for column in ("TEAM", "MODEL", "gpt-4o", "claude-sonnet-4", "HERE", "SAVED VS PRICIEST"):
        assert column in header
    assert "support" in result.stdout
    assert "(total)" in result.stdout
    assert "per 1M tokens, from the bundled table" in result.stdout
    assert "busy or idle" in result.stdout
