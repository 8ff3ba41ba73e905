"""`inhouse usage ...`: who used what, and what it would have cost elsewhere; errors exit 2."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from inhouse.cli.options import ConfigOpt, HomeOpt, refusals, settings_from

if TYPE_CHECKING:
    from inhouse.ledger.reports import SavingsReport, SavingsRow, UsageRow
    from inhouse.ledger.training import TrainingRow


usage_app = typer.Typer(
    help="Usage reports: tokens, requests and latency; `usage savings` for costs.",
    invoke_without_command=True,
)

SinceOpt = Annotated[
    str,
    typer.Option(
        "--since",
        help="Window start: a duration back from now (30d, 12h, 2w) or a UTC date (2026-11-01).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the report as JSON.")]


@usage_app.callback()
def usage(
    ctx: typer.Context,
    by: Annotated[
        str, typer.Option("--by", help="Group rows by: user, group, model, key or day.")
    ] = "user",
    since: SinceOpt = "30d",
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    home: HomeOpt = None,
) -> None:
    """Tokens, requests, errors and latency per user, group, model, key or day; fine-tuning
    jobs (tokens trained, machine time) in a table of their own."""
    if ctx.invoked_subcommand is not None:
        return
    from inhouse.cli.context import opened_store
    from inhouse.ledger.reports import usage_report

    with refusals():
        settings = settings_from(config, home)
        start, end = _window(since)
        with opened_store(settings) as db, db.read() as session:
            rows = usage_report(session, start, end, by)
            trained = usage_report(session, start, end, by, training=True)
    if as_json:
        body = {"by": by, "since": start, "until": end, "rows": [r.as_dict() for r in rows]}
        body["training"] = [r.as_dict() for r in trained]
        typer.echo(json.dumps(body, indent=2))
        return
    typer.echo(f"usage by {by} since {_when(start)}")
    _print_usage(by, rows)
    if trained:
        typer.echo(f"\nfine-tuning jobs by {by}")
        _print_training(by, trained)


def _print_usage(by: str, rows: Sequence[UsageRow]) -> None:
    if not rows:
        typer.echo("no requests in this window")
        return
    header = [by.upper(), "REQUESTS", "PROMPT", "COMPLETION", "CACHED", "ERRORS", "AVG MS"]
    counts = ("requests", "prompt_tokens", "completion_tokens", "cached_tokens", "errors")
    cells = [
        [r.label, *(f"{getattr(r, name):,}" for name in counts), f"{r.avg_latency_ms:,.0f}"]
        for r in rows
    ]
    _table(header, cells, text_columns=1)


def _print_training(by: str, rows: Sequence[UsageRow]) -> None:
    header = [by.upper(), "JOBS", "TRAINED TOKENS", "FAILED", "HOURS"]
    cells = [
        [
            r.label,
            f"{r.requests:,}",
            f"{r.prompt_tokens:,}",
            f"{r.errors:,}",
            f"{r.avg_latency_ms * r.requests / 3_600_000:,.2f}",
        ]
        for r in rows
    ]
    _table(header, cells, text_columns=1)


@usage_app.command("savings")
def savings(
    since: SinceOpt = "30d",
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    home: HomeOpt = None,
) -> None:
    """What this traffic would have cost at commercial APIs, against its cost here."""
    from inhouse.cli.context import opened_store
    from inhouse.ledger.prices import load_prices
    from inhouse.ledger.reports import savings_report

    with refusals():
        settings = settings_from(config, home)
        start, end = _window(since)
        prices = load_prices(settings.costs.price_file)
        with opened_store(settings) as db, db.read() as session:
            report = savings_report(session, start, end, prices, settings.costs)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
        return
    _print_savings(report, settings.costs.price_file)


def _window(since: str) -> tuple[float, float]:
    from inhouse.ledger.periods import parse_since

    now = time.time()
    return parse_since(since, now), now


def _when(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _places(report: SavingsReport) -> int:
    """Cents for sums a person budgets; four decimals when the whole report is under $1."""
    largest = max([*report.total.api_costs.values(), report.total.local_cost], default=0.0)
    return 2 if largest >= 1 else 4


def _print_savings(report: SavingsReport, price_file: Path | None) -> None:
    typer.echo(f"savings since {_when(report.since)} ({report.currency})")
    if not report.rows:
        typer.echo("no requests in this window")
    else:
        header = ["TEAM", "MODEL", "REQUESTS", "TOKENS", *report.apis]
        header += ["HERE", "SAVED VS PRICIEST", "SAVED VS CHEAPEST"]
        places = _places(report)
        cells = [_savings_cells(row, report.apis, places) for row in [*report.rows, report.total]]
        _table(header, cells, text_columns=2)
    if report.training:
        _print_training_savings(report)
    source = price_file or "the bundled table"
    typer.echo(
        f"\nprices: table {report.price_version} of {report.price_as_of}, "
        f"{report.currency} per 1M tokens, from {source} (edit it, or set costs.price_file)"
    )
    typer.echo(
        f"here: {report.cost_basis}; {report.hours:,.1f} h in the window = "
        f"${report.machine_cost:,.2f}"
    )
    typer.echo(
        "The machine costs the same busy or idle: its cost over the whole window, less the "
        "hours fine-tuning jobs trained, is shared among rows by their share of all tokens "
        "served."
    )


def _savings_cells(row: SavingsRow, apis: Sequence[str], places: int) -> list[str]:
    costs = [row.api_costs[name] for name in apis]
    money = [*costs, row.local_cost, max(costs) - row.local_cost, min(costs) - row.local_cost]
    return [
        row.team,
        row.model,
        f"{row.requests:,}",
        f"{row.total_tokens:,}",
        *(f"{amount:,.{places}f}" for amount in money),
    ]


def _print_training_savings(report: SavingsReport) -> None:
    typer.echo(
        "\nfine-tuning: what the same training would cost at APIs that sell it (the tokens "
        "of succeeded jobs) against the machine time of every job here"
    )
    apis = report.training_apis
    header = ["USER", "MODEL", "JOBS", "TOKENS", *apis, "HERE", "SAVED VS PRICIEST"]
    rows = [*report.training, report.training_total]
    cells = [_training_cells(row, apis, _places(report)) for row in rows]
    _table(header, cells, text_columns=2)


def _training_cells(row: TrainingRow, apis: Sequence[str], places: int) -> list[str]:
    costs = [row.api_costs.get(name, 0.0) for name in apis]
    money = [*costs, row.local_cost, max(costs, default=0.0) - row.local_cost]
    return [
        row.user,
        row.model,
        f"{row.jobs:,}",
        f"{row.billable_tokens:,}",
        *(f"{amount:,.{places}f}" for amount in money),
    ]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int) -> None:
    """Text left-aligned in the first `text_columns` columns, numbers right-aligned after."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = (
            cell.ljust(width) if i < text_columns else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        typer.echo("  ".join(cells).rstrip())
