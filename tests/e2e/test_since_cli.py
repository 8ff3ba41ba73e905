"""Every `--since` of the CLI is checked the same way: a window that does not start at a
real time between 1970 and now is refused (exit 2, one clear line), never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from inhouse.cli.audit import audit_app
from inhouse.cli.usage import usage_app

runner = CliRunner()
HUGE = "9" * 400 + "d"  # float() of it is inf

BAD = [
    (HUGE, "reaches back before 1970-01-01"),
    ("99999999999999999w", "reaches back before 1970-01-01"),
    ("1969-12-31", "reaches back before 1970-01-01"),
    ("2999-01-01", "is in the future"),
    ("last tuesday", "is neither a duration"),
]
COMMANDS = [
    (audit_app, ["export"]),
    (usage_app, []),
    (usage_app, ["savings"]),
]


@pytest.mark.parametrize(("since", "problem"), BAD)
@pytest.mark.parametrize(("app", "command"), COMMANDS, ids=["audit", "usage", "savings"])
def test_a_bad_since_exits_2_with_one_line(
    tmp_path: Path, app: object, command: list[str], since: str, problem: str
) -> None:
    args = [*command, "--since", since, "--home", str(tmp_path / "home")]
    result = runner.invoke(app, args)  # type: ignore[arg-type]
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: since: ") and problem in line
    assert len(line) < 200  # the 400 nines are not echoed back


def test_a_good_since_is_still_taken(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    for since in ("30d", "12h", "1970-01-02", "2026-01-01T00:00:00+00:00"):
        result = runner.invoke(usage_app, ["--since", since, "--home", home])
        assert result.exit_code == 0, (since, result.output)
