"""`inhouse doctor`: print what `run_checks` found; exit 1 when any check failed."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from inhouse.config import Settings, load_settings
from inhouse.doctor import Check, run_checks

EXIT_FAILED = 1
_COLORS = {"ok": typer.colors.GREEN, "warn": typer.colors.YELLOW, "fail": typer.colors.RED}
_HEADERS = ("area", "check", "status", "detail")


def doctor_command(config: Path | None, home: Path | None, as_json: bool) -> None:
    """Run every check on the settings from `config`, env and `home`; exit 1 if any failed."""
    overrides = {"home": home} if home is not None else {}
    checks = run_checks(load_settings(config, **overrides))
    if as_json:
        ok = not any(check.status == "fail" for check in checks)
        typer.echo(json.dumps({"ok": ok, "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        _print_table(checks)
    if any(check.status == "fail" for check in checks):
        raise typer.Exit(EXIT_FAILED)


def _print_table(checks: list[Check]) -> None:
    rows = [(c.area, c.name, c.status, c.detail) for c in checks]
    widths = [max(len(row[i]) for row in [_HEADERS, *rows]) for i in range(3)]
    typer.secho(_line(_HEADERS, widths), bold=True)
    for area, name, status, detail in rows:
        # pad before styling: the color codes must not count toward the column's width
        shown = typer.style(status.ljust(widths[2]), fg=_COLORS[status])
        typer.echo(_line((area, name, shown, detail), widths))


def _line(cells: tuple[str, str, str, str], widths: list[int]) -> str:
    padded = [cell.ljust(width) for cell, width in zip(cells, widths, strict=False)]
    return "  ".join([*padded, cells[3]])


doctor_app = typer.Typer(help="Check this installation.", add_completion=False)


@doctor_app.command()
def doctor(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML settings file.")
    ] = None,
    home: Annotated[
        Path | None,
        typer.Option(
            "--home", help=f"{Settings.model_fields['home'].description} (env INHOUSE_HOME)"
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
) -> None:
    """Prove the air-gap by trying, and check storage, audit, models and keys."""
    doctor_command(config, home, as_json)
