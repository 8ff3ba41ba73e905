"""`inhouse tune promote | rollback | history | schedule ...`: tuned versions behind an alias.

Commands run as the local operator (who holds the database file anyway), audited as
`cli:<os user>`. `promote` is refused unless the job passed its evaluation gate; `--force`
overrides and the audit trail says so. `inhouse serve` follows an alias at its next request.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from inhouse.auth.authenticate import local_operator
from inhouse.cli.context import audited_store, cli_actor
from inhouse.cli.options import ConfigOpt, HomeOpt, refusals, settings_from
from inhouse.models.store import ModelStore
from inhouse.tuning.schedule import MAX_THRESHOLD, ScheduleService
from inhouse.tuning.versions import VersionService

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
schedule_app = typer.Typer(
    help="Continual learning: retrain on new feedback, promote if better.", no_args_is_help=True
)


def register(tune_app: typer.Typer) -> None:
    """Add the version and schedule commands to `inhouse tune`."""
    tune_app.command("promote")(promote)
    tune_app.command("rollback")(rollback)
    tune_app.command("history")(history)
    tune_app.add_typer(schedule_app, name="schedule")


@contextmanager
def _versions(config: Any, home: Any) -> Iterator[VersionService]:
    settings = settings_from(config, home)
    with refusals(), audited_store(settings) as (db, audit):
        yield VersionService(db, audit, ModelStore(settings.home))


@contextmanager
def _schedules(config: Any, home: Any) -> Iterator[ScheduleService]:
    settings = settings_from(config, home)
    with refusals(), audited_store(settings) as (db, audit):
        yield ScheduleService(db, audit, ModelStore(settings.home), settings.knowledge)


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M") if ts else "-"


def _figure(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else "-"


def promote(
    name: str,
    alias: Annotated[str, typer.Option("--alias", help="The name clients call.")],
    force: Annotated[
        bool, typer.Option("--force", help="Promote even though the gate failed (audited).")
    ] = False,
    config: ConfigOpt = None,
    home: HomeOpt = None,
) -> None:
    """Point ALIAS at job NAME's tuned model; refused unless its evaluation passed."""
    with _versions(config, home) as service:
        change = service.promote(local_operator(), name, alias, force, actor=cli_actor())
    forced = " (forced: " + "; ".join(change["reasons"]) + ")" if change["forced"] else ""
    typer.echo(f"{alias} -> {change['model']} (was {change['previous'] or 'unset'}){forced}")


def rollback(alias: str, config: ConfigOpt = None, home: HomeOpt = None) -> None:
    """Point ALIAS back where it was before its last promotion."""
    with _versions(config, home) as service:
        change = service.rollback(local_operator(), alias, actor=cli_actor())
    typer.echo(f"{alias} -> {change['model']} (was {change['previous']})")


def history(
    alias: str, config: ConfigOpt = None, home: HomeOpt = None, as_json: JsonOpt = False
) -> None:
    """The versions ALIAS pointed to, newest first, with their scores and who moved it."""
    with _versions(config, home) as service:
        found = service.history(alias)
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    typer.echo(f"{alias} -> {found['current'] or 'unset'}")
    for row in found["data"]:
        gate = {True: "passed", False: "failed", None: "-"}[row["passed"]]
        typer.echo(
            f"{_when(row['created_at'])}  {row['action']:<8}  {row['model']}"
            f"  (was {row['previous'] or 'unset'})  gate {gate}"
            f"  loss {_figure(row['base_loss'])} -> {_figure(row['tuned_loss'])}"
            f"  score {_figure(row['base_score'])} -> {_figure(row['tuned_score'])}"
            f"  by {row['actor']}" + ("  FORCED" if row["forced"] else "")
        )


@schedule_app.command("add")
def schedule_add(
    name: str,
    base_job: Annotated[str, typer.Option("--from", help="The job whose line it continues.")],
    when_feedback: Annotated[
        int,
        typer.Option(
            "--when-feedback", min=1, max=MAX_THRESHOLD, help="New usable rated answers needed."
        ),
    ] = 200,
    alias: Annotated[
        str | None, typer.Option("--promote", help="The alias to promote a better version to.")
    ] = None,
    min_rating: Annotated[
        int,
        typer.Option(
            "--min-rating", min=-1, max=1, help="-1: liked and corrected answers; 1: liked only."
        ),
    ] = -1,
    config: ConfigOpt = None,
    home: HomeOpt = None,
) -> None:
    """Retrain from the line's newest version when enough new feedback exists (in serve)."""
    with _schedules(config, home) as service:
        made = service.create(
            local_operator(), name, base_job, alias, when_feedback, min_rating, actor=cli_actor()
        )
    typer.echo(
        f"schedule {made['name']}: retrain {made['base_job']}'s line after "
        f"{made['min_new_feedback']} new rated answers"
        + (f", promote to {made['alias']} if the gate passes" if made["alias"] else "")
    )


@schedule_app.command("list")
def schedule_list(config: ConfigOpt = None, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Every schedule: its line, alias, threshold, waiting feedback, runs and last job."""
    with _schedules(config, home) as service:
        rows = service.schedules()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no schedule")
    for row in rows:
        typer.echo(
            f"{row['name']}  from {row['base_job']}  -> {row['alias'] or '-'}"
            f"  {row['new_feedback']}/{row['min_new_feedback']} new feedback"
            f"  runs {row['runs']}  last {row['last_job'] or '-'} {_when(row['last_run_at'])}"
            + ("" if row["enabled"] else "  (disabled)")
        )


@schedule_app.command("rm")
def schedule_remove(name: str, config: ConfigOpt = None, home: HomeOpt = None) -> None:
    """Delete a schedule (its versions and alias stay)."""
    with _schedules(config, home) as service:
        service.remove(local_operator(), name, actor=cli_actor())
    typer.echo(f"removed schedule {name}")
