"""`inhouse tune promote | rollback | history | schedule` through the real CLI: a refusal
exits 2 naming the gate's reasons and --force; the operator's moves are audited as `cli:`."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from inhouse.cli.main import app
from inhouse.models.store import ModelStore
from inhouse.store.db import open_database
from tests.conftest import make_settings
from tests.tuning.versions_world import (
    FinishedJob,
    audit_entries,
    build_store,
    failing,
    passing,
    write_job,
)

runner = CliRunner()


def run(home: Path, *args: str, code: int = 0) -> str:
    result = runner.invoke(app, [*args, "--home", str(home)])
    assert result.exit_code == code, result.output
    return result.output


def test_promote_rollback_history_and_schedules_from_the_cli(tmp_path: Path) -> None:
    home = build_store(tmp_path / "home")
    run(home, "users", "list")  # creates and migrates the store
    db = open_database(make_settings(home).database_url())
    try:
        write_job(db, FinishedJob("support-v1", None, "v1", passing()))
        write_job(db, FinishedJob("support-v2", None, "v2", failing("loss went up")))

        assert "assistant -> v1 (was unset)" in run(
            home, "tune", "promote", "support-v1", "--alias", "assistant"
        )
        refused = run(home, "tune", "promote", "support-v2", "--alias", "assistant", code=2)
        assert "loss went up" in refused and "--force" in refused
        forced = run(home, "tune", "promote", "support-v2", "--alias", "assistant", "--force")
        assert "assistant -> v2 (was v1) (forced: loss went up)" in forced
        assert ModelStore(home).aliases() == {"assistant": "v2"}
        assert "assistant -> v1 (was v2)" in run(home, "tune", "rollback", "assistant")
        shown = run(home, "tune", "history", "assistant")
        assert shown.splitlines()[0] == "assistant -> v1"
        assert "promote   v2" in shown and "FORCED" in shown and "loss 2 -> 2.3" in shown
        assert len(json.loads(run(home, "tune", "history", "assistant", "--json"))["data"]) == 3
        assert "no promotion" in run(home, "tune", "rollback", "nothing", code=2)
        [forced_entry] = [e for e in audit_entries(db, "tuning.promote") if e.detail["forced"]]
        assert forced_entry.actor.startswith("cli:")

        added = run(
            home, "tune", "schedule", "add", "support", "--from", "support-v1",
            "--when-feedback", "20", "--promote", "assistant",
        )  # fmt: skip
        assert "after 20 new rated answers, promote to assistant" in added
        assert "support  from support-v1  -> assistant  0/20 new feedback" in run(
            home, "tune", "schedule", "list"
        )
        run(home, "tune", "schedule", "add", "x", "--from", "nope", code=2)
        assert "removed schedule support" in run(home, "tune", "schedule", "rm", "support")
        assert "no schedule" in run(home, "tune", "schedule", "list")
    finally:
        db.close()
