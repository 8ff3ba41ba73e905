"""`inhouse knowledge connect` and `sync` through the real CLI, on an SQLite source."""

from __future__ import annotations

import json
from pathlib import Path

from tests.knowledge.test_cli import run
from tests.knowledge.test_connectors import QUERY, execute, make_source


def test_connect_sync_list_show_and_failures(tmp_path: Path) -> None:
    home = tmp_path / "home"
    source = make_source(tmp_path / "crm.db", 120)
    url = f"sqlite:///{source}"
    run(home, "groups", "add", "sales")
    refused = run(home, "knowledge", "connect", "crm", "--url", url, "--query", QUERY, code=2)
    assert "--group" in refused
    bad = run(
        home,
        "knowledge",
        "connect",
        "crm",
        "--url",
        url,
        "--query",
        "select 1; drop table accounts",
        "--group",
        "sales",
        code=2,
    )
    assert "single SELECT" in bad
    assert "not an interval" in run(
        home,
        "knowledge",
        "connect",
        "crm",
        "--url",
        url,
        "--query",
        QUERY,
        "--every",
        "soon",
        "--group",
        "sales",
        code=2,
    )

    out = run(
        home,
        "knowledge",
        "connect",
        "crm",
        "--url",
        url,
        "--query",
        QUERY,
        "--every",
        "15m",
        "--updated-column",
        "updated_at",
        "--group",
        "sales",
    )
    assert "connected crm" in out and "every 15m" in out
    synced = run(home, "knowledge", "sync", "crm")
    assert "100 rows read" in synced and "ok" in synced and "120 changed" in synced
    execute(source, "DELETE FROM accounts WHERE id = 5")
    assert "0 changed, 1 removed" in run(home, "knowledge", "sync", "crm")

    (listed,) = json.loads(run(home, "knowledge", "list", "--json"))
    assert listed["documents"] == 119 and listed["sync"]["status"] == "ok"
    assert "crm" in run(home, "knowledge", "list") and " ok" in run(home, "knowledge", "list")
    shown = json.loads(run(home, "knowledge", "show", "crm"))["sync"]
    assert shown["url"] == url and shown["every_s"] == 900.0 and shown["next_run_at"] > 0

    source.unlink()
    failed = run(home, "knowledge", "sync", "crm", code=1)
    assert "failed" in failed and "unable to open" in failed
    status = json.loads(run(home, "knowledge", "show", "crm"))
    assert status["documents"] == 119 and status["sync"]["status"] == "failed"
