"""`inhouse audit ...`: prove the audit trail intact, export it for a SIEM; errors exit 2."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TextIO

import typer

from inhouse.cli.options import ConfigOpt, HomeOpt, refusals, settings_from

EXIT_BROKEN = 1

audit_app = typer.Typer(
    help="The tamper-evident audit trail: verify it, export it.", no_args_is_help=True
)


@audit_app.command("verify")
def verify_command(config: ConfigOpt = None, home: HomeOpt = None) -> None:
    """Check every entry, checkpoint and the signed head; exit 1 naming the first bad entry."""
    from inhouse.audit.check import verify
    from inhouse.audit.trail import load_audit_key
    from inhouse.cli.context import opened_store

    with refusals():
        settings = settings_from(config, home)
        key = load_audit_key(settings.audit_key_path())
        with opened_store(settings) as db:
            result = verify(db, key)
    if not result.ok:
        typer.secho(
            f"audit trail BROKEN at entry {result.first_bad_seq}: {result.problem}",
            fg="red",
        )
        raise typer.Exit(EXIT_BROKEN)
    typer.echo(
        f"audit trail intact: {result.entries} entries, {result.checkpoints} signed checkpoints"
    )


@audit_app.command("export")
def export_command(
    since: Annotated[
        str,
        typer.Option(
            "--since",
            help="Entries from: a duration back from now (7d, 12h, 2w) or a UTC date (2026-11-01).",
        ),
    ] = "7d",
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")
    ] = None,
    config: ConfigOpt = None,
    home: HomeOpt = None,
) -> None:
    """Write the audit entries since a time, in order, with their hashes; the export is audited."""
    from inhouse.audit.check import check_format, export
    from inhouse.cli.context import audited_store, cli_actor
    from inhouse.ledger.periods import parse_since

    with refusals():
        check_format(fmt)
        settings = settings_from(config, home)
        start = parse_since(since, time.time())
        with audited_store(settings) as (db, trail):
            with _destination(output) as out:
                count = export(db, start, fmt, out)
            detail = {"since": start, "format": fmt, "entries": count, "output": str(output or "-")}
            with db.write() as session:
                trail.record(session, cli_actor(), "audit.export", "audit_log", detail)
    when = datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%d %H:%M UTC")
    typer.echo(f"exported {count} audit entries since {when}", err=True)


@contextmanager
def _destination(output: Path | None) -> Iterator[TextIO]:
    """stdout, or `output` created owner-only: the trail names people and addresses."""
    if output is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w", encoding="utf-8", newline="") as out:
        yield out
