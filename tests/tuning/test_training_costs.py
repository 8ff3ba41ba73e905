"""Fine-tuning in the ledger (SQLite and PostgreSQL): the usage rows the runner writes per job
are reported apart from serving, and the savings report prices them at the APIs that sell
fine-tuning (bundled price table) against their machine time here. Rows are written
directly, as `tuning/runner.py` writes them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from inhouse.cli.main import app
from inhouse.config import CostSettings
from inhouse.ledger.prices import load_prices
from inhouse.ledger.reports import savings_report, usage_report
from inhouse.store.db import Database, open_database
from inhouse.store.tables import UsageRecord, User
from tests.conftest import make_settings

NOW = time.time()
SINCE, UNTIL = NOW - 86400, NOW + 60
MACHINE = CostSettings(machine_usd_per_hour=0.50)
HOUR_MS = 3_600_000.0


def _row(endpoint: str, model: str, prompt: int, **more: object) -> UsageRecord:
    fields: dict[str, object] = {
        "user_id": None,
        "key_id": None,
        "group_id": None,
        "completion_tokens": 0,
        "cached_tokens": 0,
        "latency_ms": 50.0,
        "status": "ok",
        **more,
    }
    return UsageRecord(
        ts=NOW - 3600,
        request_id=f"{endpoint}-{model}-{prompt}",
        model=model,
        endpoint=endpoint,
        prompt_tokens=prompt,
        **fields,
    )


def _seed(db: Database) -> int:
    """Serving traffic on `assistant`, two jobs of `support-v1` (one failed) and one of
    `legal-v1`; returns ann's user id."""
    with db.write() as session:
        ann = User(name="ann", role="member", created_at=NOW)
        session.add(ann)
        session.flush()
        session.add_all(
            [
                _row("chat", "assistant", 300_000, completion_tokens=100_000, user_id=ann.id),
                _row(
                    "fine_tuning", "support-v1", 1_000_000, latency_ms=2 * HOUR_MS, user_id=ann.id
                ),
                _row(
                    "fine_tuning",
                    "support-v1",
                    500_000,
                    latency_ms=HOUR_MS,
                    status="failed",
                    user_id=ann.id,
                ),
                _row("fine_tuning", "legal-v1", 200_000, latency_ms=HOUR_MS / 2),
            ]
        )
        return ann.id


def test_training_is_reported_apart_from_serving(db: Database) -> None:
    _seed(db)
    with db.read() as session:
        serving = usage_report(session, SINCE, UNTIL, "model")
        training = usage_report(session, SINCE, UNTIL, "model", training=True)
    assert [(r.label, r.total_tokens) for r in serving] == [("assistant", 400_000)]
    assert [(r.label, r.requests, r.prompt_tokens, r.errors) for r in training] == [
        ("support-v1", 2, 1_500_000, 1),
        ("legal-v1", 1, 200_000, 0),
    ]


def test_savings_price_the_training_at_apis_that_sell_fine_tuning(db: Database) -> None:
    ann = _seed(db)
    prices = load_prices()  # the bundled table
    with db.read() as session:
        report = savings_report(session, SINCE, UNTIL, prices, MACHINE)
        own = savings_report(session, SINCE, UNTIL, prices, MACHINE, user_id=ann)
    assert "gpt-4o-mini" in report.training_apis and "claude-sonnet-4" not in report.training_apis
    support, legal = report.training
    assert (support.user, support.model, support.jobs) == ("ann", "support-v1", 2)
    assert (support.trained_tokens, support.billable_tokens) == (1_500_000, 1_000_000)
    # bundled: gpt-4o-mini fine-tuning $3.00 and gpt-4.1-mini $5.00 per 1M training tokens
    assert support.api_costs["gpt-4o-mini"] == pytest.approx(3.0)
    assert support.api_costs["gpt-4.1-mini"] == pytest.approx(5.0)
    assert support.train_hours == pytest.approx(3.0)
    assert support.local_cost == pytest.approx(1.5)  # 3 h at $0.50/h, the failed job too
    assert support.savings["gpt-4o-mini"] == pytest.approx(1.5)
    assert legal.user == "(operator)" and legal.api_costs["gpt-4o-mini"] == pytest.approx(0.6)
    assert report.training_total.api_costs["gpt-4o-mini"] == pytest.approx(3.6)
    assert report.training_total.local_cost == pytest.approx(1.75)
    # serving is priced as before, without the training rows, and shares the rest of the machine
    assert [row.model for row in report.rows] == ["assistant"]
    assert report.total.local_cost == pytest.approx(report.machine_cost - 1.75)
    assert [row.model for row in own.training] == ["support-v1"]
    assert json.loads(json.dumps(report.as_dict()))["training_total"]["jobs"] == 3


def test_the_cli_shows_training_in_tables_of_its_own(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = make_settings(home)
    runner = CliRunner()
    assert runner.invoke(app, ["users", "list", "--home", str(home)]).exit_code == 0  # migrate
    db = open_database(settings.database_url())
    try:
        _seed(db)
        with db.read() as session:
            assert session.scalar(select(User.name)) == "ann"
    finally:
        db.close()
    usage = runner.invoke(app, ["usage", "--by", "model", "--home", str(home)])
    assert usage.exit_code == 0, usage.output
    serving, training = usage.output.split("fine-tuning jobs by model")
    assert "assistant" in serving and "support-v1" not in serving
    assert "support-v1" in training and "1,500,000" in training
    saved = runner.invoke(app, ["usage", "savings", "--home", str(home)])
    assert saved.exit_code == 0, saved.output
    part = saved.output.split("fine-tuning: what the same training would cost")[1]
    assert "support-v1" in part and "gpt-4o-mini" in part and "claude" not in part.split("\n")[1]
    data = json.loads(runner.invoke(app, ["usage", "--json", "--home", str(home)]).output)
    assert [row["label"] for row in data["training"]] == ["ann", "(no user)"]
