"""`inhouse tune data ...` through the real CLI: add, list, show, rm, from-feedback and
from-collection; refusals exit 2 with the reason and store nothing."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from inhouse.cli.main import app
from inhouse.store.db import open_database
from inhouse.store.tables import AuditEntry
from tests.tuning.test_datasets import chat, jsonl

runner = CliRunner()


def run(home: Path, *args: str, code: int = 0) -> str:
    result = runner.invoke(app, [*args, "--home", str(home)])
    assert result.exit_code == code, result.output
    return result.output


def test_add_list_show_and_remove(tmp_path: Path) -> None:
    home = tmp_path / "home"
    tickets = tmp_path / "tickets.jsonl"
    lines = [
        chat(f"Where is ticket {i}?", f"Ticket {i} is open, mail ann@example.com.")
        for i in range(10)
    ]
    tickets.write_bytes(jsonl(*lines, lines[0]))
    run(home, "groups", "add", "support")

    added = run(
        home,
        "tune",
        "data",
        "add",
        "support",
        str(tickets),
        "--eval-split",
        "0.1",
        "--redact",
        "--share",
        "support",
    )
    assert "10 examples (9 train, 1 eval), 1 duplicates dropped, redacted" in added
    listed = json.loads(run(home, "tune", "data", "list", "--json"))
    assert [(d["name"], d["shared_with"], d["format"]) for d in listed] == [
        ("support", ["support"], "chat")
    ]
    shown = run(home, "tune", "data", "show", "support", "--examples", "2")
    assert '"train": 9' in shown and shown.count("[train] ") == 2
    assert "[EMAIL]" in shown and "ann@example.com" not in shown
    assert "exists already" in run(home, "tune", "data", "add", "support", str(tickets), code=2)
    assert "removed support (10 examples)" in run(home, "tune", "data", "rm", "support")
    assert "no data set" in run(home, "tune", "data", "rm", "support", code=2)
    db = open_database(f"sqlite:///{home / 'inhouse.db'}")
    with db.read() as session:
        entries = session.execute(
            select(AuditEntry.actor, AuditEntry.action).where(AuditEntry.action.like("tuning.%"))
        ).all()
    db.close()
    assert [action for _, action in entries] == ["tuning.dataset.add", "tuning.dataset.delete"]
    assert all(actor.startswith("cli:") for actor, _ in entries)


def test_bad_files_exit_2_with_line_numbers_and_store_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(
        jsonl(chat("a", "b"), "not json", '{"messages": [{"role": "user", "content": "x"}]}')
    )
    refused = run(home, "tune", "data", "add", "bad", str(bad), code=2)
    assert "line 2: not valid JSON" in refused and "line 3: no assistant turn" in refused
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert "no example" in run(
        home, "tune", "data", "add", "e", str(empty), "--format", "text", code=2
    )
    assert "cannot open" in run(home, "tune", "data", "add", "m", str(tmp_path / "missing"), code=2)
    assert run(home, "tune", "data", "list").strip() == "no data set"


def test_from_feedback_and_from_collection_refuse_what_is_not_there(tmp_path: Path) -> None:
    home = tmp_path / "home"
    feedback = run(
        home, "tune", "data", "from-feedback", "good", "--since", "30d", "--min-rating", "1", code=2
    )
    assert "no example" in feedback and "tuning.keep_feedback_text" in feedback
    missing = run(home, "tune", "data", "from-collection", "hb", "handbook", code=2)
    assert "no collection named 'handbook'" in missing
