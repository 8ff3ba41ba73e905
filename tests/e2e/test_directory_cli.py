"""The admin's commands from the issue, in order, through the real CLI (typer's runner)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from inhouse.auth.authenticate import principal_for_key
from inhouse.cli.main import app
from inhouse.store.db import open_database

runner = CliRunner()


def run(home: Path, *args: str, code: int = 0) -> str:
    result = runner.invoke(app, [*args, "--home", str(home)])
    assert result.exit_code == code, result.output
    return result.output


def test_an_admin_sets_up_a_team_with_a_scoped_key(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert "added alice (member)" in run(
        home, "users", "add", "alice", "--role", "member", "--group", "legal"
    )
    created = run(
        home,
        "keys",
        "create",
        "--user",
        "alice",
        "--models",
        "assistant",
        "--quota-tokens-day",
        "200000",
        "--rpm",
        "60",
    )
    key_id, secret = re.search(r"(key_\w+) for alice: (ih-\S+)", created).groups()  # type: ignore[union-attr]
    run(home, "groups", "grant", "legal", "--collection", "contracts")

    (group,) = json.loads(run(home, "groups", "list", "--json"))
    assert (group["name"], group["members"], group["collections"]) == (
        "legal",
        ["alice"],
        ["contracts"],
    )
    (key,) = json.loads(run(home, "keys", "list", "--json"))
    assert key["id"] == key_id and key["models"] == ["assistant"]
    assert key["limits"] == {
        "tokens_per_day": 200000,
        "tokens_per_month": None,
        "requests_per_minute": 60,
    }
    assert secret not in run(home, "keys", "list")  # shown once, never listed

    db = open_database(f"sqlite:///{home / 'inhouse.db'}")
    try:
        with db.read() as session:
            principal = principal_for_key(session, secret, 0.0)
        assert principal.user_name == "alice" and principal.models == frozenset({"assistant"})
        assert principal.collections == frozenset({"contracts"})
    finally:
        db.close()

    run(home, "users", "set", "alice", "--quota-tokens-day", "none", "--role", "auditor")
    (user,) = json.loads(run(home, "users", "list", "--json"))
    assert user["role"] == "auditor" and user["limits"]["tokens_per_day"] is None
    assert f"revoked {key_id}" in run(home, "keys", "revoke", key_id)
    assert "revoked" in run(home, "keys", "list")
    assert "intact" in run(home, "audit", "verify")


def test_mistakes_are_refused_with_a_message_and_exit_2(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert "no user named 'bob'" in run(home, "keys", "create", "--user", "bob", code=2)
    assert "role must be one of" in run(home, "users", "add", "bob", "--role", "root", code=2)
    assert "must be 1-64 characters" in run(home, "users", "add", "Bob Smith", code=2)
    run(home, "users", "add", "bob")
    assert "already exists" in run(home, "users", "add", "bob", code=2)
    assert "whole number or 'none'" in run(home, "users", "set", "bob", "--rpm", "lots", code=2)
    assert json.loads(run(home, "users", "list", "--json"))[0]["name"] == "bob"
