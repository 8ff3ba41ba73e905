"""`inhouse audit verify|export` as an admin runs them, on a store in a temporary home."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inhouse.audit.trail import AuditTrail, load_audit_key
from inhouse.cli.audit import audit_app
from inhouse.cli.context import opened_store
from inhouse.config import load_settings

runner = CliRunner()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home whose trail holds five entries, written the way the server writes them."""
    monkeypatch.setenv("INHOUSE_LEDGER__CHECKPOINT_EVERY", "2")
    home = tmp_path / "home"
    settings = load_settings(None, home=home)
    key = load_audit_key(settings.audit_key_path())
    trail = AuditTrail(key, settings.ledger.checkpoint_every)
    with opened_store(settings) as db:
        trail.ensure_head(db)
        for n in range(5):
            with db.write() as session:
                trail.record(session, "user:admin", "user.create", f"user{n}", {"role": "user"})
    return home


def audit(home: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(audit_app, [*args, "--home", str(home)])
    return result.exit_code, result.stdout, result.stderr


def test_verify_reports_an_intact_trail(home: Path) -> None:
    assert audit(home, "verify") == (
        0,
        "audit trail intact: 5 entries, 2 signed checkpoints\n",
        "",
    )


def test_verify_names_the_entry_edited_behind_its_back(home: Path) -> None:
    with sqlite3.connect(home / "inhouse.db") as conn:
        conn.execute("UPDATE audit_log SET actor = 'user:mallory' WHERE seq = 3")
    code, out, _ = audit(home, "verify")
    assert code == 1
    assert out == "audit trail BROKEN at entry 3: entry 3 does not match its hash (edited?)\n"


def test_verify_names_a_truncation(home: Path) -> None:
    with sqlite3.connect(home / "inhouse.db") as conn:
        conn.execute("DELETE FROM audit_log WHERE seq > 3")
    code, out, _ = audit(home, "verify")
    assert code == 1
    assert out.startswith("audit trail BROKEN at entry 4: ")


def test_export_writes_jsonl_and_is_itself_audited(home: Path) -> None:
    code, out, err = audit(home, "export", "--since", "1h")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["seq"] for line in lines] == [1, 2, 3, 4, 5]
    assert lines[2]["target"] == "user2"
    assert lines[2]["prev_hash"] == lines[1]["hash"]
    assert "exported 5 audit entries since" in err
    code, out, _ = audit(home, "export")
    last = json.loads(out.splitlines()[-1])
    assert (last["seq"], last["action"], last["actor"][:4]) == (6, "audit.export", "cli:")
    assert last["detail"]["entries"] == 5
    assert audit(home, "verify")[:2] == (0, "audit trail intact: 7 entries, 3 signed checkpoints\n")


def test_export_to_a_csv_file_readable_only_by_its_owner(home: Path, tmp_path: Path) -> None:
    target = tmp_path / "audit.csv"
    code, out, err = audit(home, "export", "--format", "csv", "--output", str(target))
    assert (code, out) == (0, ""), err
    table = list(csv.DictReader(io.StringIO(target.read_text())))
    assert [row["seq"] for row in table] == ["1", "2", "3", "4", "5"]
    assert json.loads(table[0]["detail"]) == {"role": "user"}
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "xml"], "error: format must be one of: jsonl, csv"),
        (["--since", "last tuesday"], "error: since: 'last tuesday' is neither a duration"),
    ],
)
def test_export_refuses_bad_options(home: Path, args: list[str], message: str) -> None:
    code, out, err = audit(home, "export", *args)
    assert (code, out) == (2, "")
    assert err.startswith(message)
