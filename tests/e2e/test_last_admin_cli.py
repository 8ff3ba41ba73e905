"""`inhouse users set|rm` keep an enabled admin, as the HTTP API does."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from inhouse.cli.main import app

runner = CliRunner()


def run(home: Path, *args: str, code: int = 0) -> str:
    result = runner.invoke(app, [*args, "--home", str(home)])
    assert result.exit_code == code, result.output
    return result.output


def test_the_cli_refuses_to_leave_no_enabled_admin(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run(home, "users", "add", "root", "--role", "admin")
    for args in (
        ["set", "root", "--role", "member"],
        ["set", "root", "--disabled"],
        ["rm", "root"],
    ):
        assert "'root': it is the last enabled admin" in run(home, "users", *args, code=2)
    run(home, "users", "add", "deputy", "--role", "admin")
    run(home, "users", "set", "root", "--role", "member")
    assert "last enabled admin" in run(home, "users", "rm", "deputy", code=2)
