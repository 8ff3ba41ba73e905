"""The issue's commands, in order, through the real CLI; every change lands in the audit trail."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from inhouse.cli.main import app
from inhouse.store.db import open_database
from inhouse.store.tables import AuditEntry
from tests.knowledge.conftest import write

runner = CliRunner()


def run(home: Path, *args: str, code: int = 0) -> str:
    result = runner.invoke(app, [*args, "--home", str(home)])
    assert result.exit_code == code, result.output
    return result.output


def test_create_add_search_list_and_delete(tmp_path: Path) -> None:
    home = tmp_path / "home"
    drive = write(
        tmp_path / "drive",
        {
            "nda.md": "# NDA\n\n## Term\n\nThe obligations survive for five years after signing.",
            "lease.txt": "The office lease ends in December and renews for two years.",
        },
    )
    run(home, "groups", "add", "legal")
    assert "created contracts" in run(home, "knowledge", "create", "contracts", "--group", "legal")
    assert "already" in run(home, "knowledge", "create", "contracts", "--group", "legal", code=2)
    assert "no group" in run(home, "knowledge", "create", "other", "--group", "nobody", code=2)

    added = run(home, "knowledge", "add", "contracts", str(drive))
    assert "[2/2]" in added and "2 added" in added

    hits = json.loads(
        run(home, "knowledge", "search", "contracts", "how long do obligations last", "--json")
    )
    assert Path(hits[0]["source"]).name == "nda.md"
    assert hits[0]["location"] == {"headings": ["NDA", "Term"]}
    table = run(home, "knowledge", "search", "contracts", "office lease", "--top-k", "1")
    assert "lease.txt" in table and "nda.md" not in table
    assert "no collection" in run(home, "knowledge", "search", "nope", "lease", code=2)

    (listed,) = json.loads(run(home, "knowledge", "list", "--json"))
    assert (listed["name"], listed["owner_group"], listed["readers"]) == (
        "contracts",
        "legal",
        ["legal"],
    )
    assert listed["documents"] == 2 and json.loads(run(home, "knowledge", "show", "contracts"))
    docs = json.loads(run(home, "knowledge", "docs", "contracts", "--json"))
    lease = next(d for d in docs if d["source"].endswith("lease.txt"))
    assert "removed" in run(home, "knowledge", "rm-doc", "contracts", str(lease["id"]))
    assert len(json.loads(run(home, "knowledge", "docs", "contracts", "--json"))) == 1
    assert "removed contracts" in run(home, "knowledge", "rm", "contracts")
    assert "no collection" in run(home, "knowledge", "docs", "contracts", code=2)
    assert json.loads(run(home, "groups", "list", "--json"))[0]["collections"] == []

    db = open_database(f"sqlite:///{home / 'inhouse.db'}")
    with db.read() as session:
        actions = list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)))
    db.close()
    knowledge = [a for a in actions if a.startswith("knowledge.") or a == "group.grant"]
    assert knowledge == [
        "knowledge.create",
        "group.grant",
        "knowledge.document.added",
        "knowledge.document.added",
        "knowledge.search",
        "knowledge.search",
        "knowledge.document.delete",
        "knowledge.delete",
    ]
