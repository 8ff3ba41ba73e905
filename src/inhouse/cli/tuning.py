"""`inhouse tune data ...`: data sets for fine-tuning, from the server's machine.

Commands run as the local operator (who holds the database file anyway) and are audited as
`cli:<os user>`; `--owner` gives a data set to a user, `--share` to groups as well.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from inhouse.auth.authenticate import local_operator
from inhouse.cli.context import audited_store, cli_actor
from inhouse.cli.options import ConfigOpt, HomeOpt, refusals, settings_from
from inhouse.knowledge.folders import read_bounded
from inhouse.tuning.datasets import MAX_EVAL_SPLIT, Format
from inhouse.tuning.service import DatasetService, Options

tune_app = typer.Typer(help="Fine-tune models on your own data.", no_args_is_help=True)
data_app = typer.Typer(help="Data sets to tune on.", no_args_is_help=True)
tune_app.add_typer(data_app, name="data")

EvalOpt = Annotated[
    float,
    typer.Option(
        "--eval-split", min=0.0, max=MAX_EVAL_SPLIT, help="Share held out for evaluation."
    ),
]
RedactOpt = Annotated[
    bool, typer.Option("--redact", help="Replace e-mails, phones, cards, IBANs, IDs by tags.")
]
OwnerOpt = Annotated[
    str | None, typer.Option("--owner", help="The user it belongs to (default: the operator).")
]
ShareOpt = Annotated[
    list[str] | None, typer.Option("--share", help="A group that may read it; repeatable.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


@contextmanager
def _service(config: Path | None, home: Path | None) -> Iterator[DatasetService]:
    settings = settings_from(config, home)
    with refusals(), audited_store(settings) as (db, audit):
        yield DatasetService(db, audit, settings.knowledge)


def _options(split: float, redact: bool, owner: str | None, share: list[str] | None) -> Options:
    shared = tuple(share or ())
    return Options(split, redact, owner=owner, share=shared, actor=cli_actor())


def _report(dataset: dict[str, Any]) -> None:
    typer.echo(
        f"{dataset['name']} ({dataset['id']}): {dataset['examples']} examples "
        f"({dataset['train']} train, {dataset['eval']} eval), "
        f"{dataset['duplicates']} duplicates dropped"
        + (", redacted" if dataset["redacted"] else "")
    )


@data_app.command("add")
def add(
    name: str,
    file: Path,
    format: Annotated[Format, typer.Option("--format", help="chat (JSONL) or text.")] = (
        Format.CHAT
    ),
    eval_split: EvalOpt = 0.0,
    redact: RedactOpt = False,
    owner: OwnerOpt = None,
    share: ShareOpt = None,
    config: ConfigOpt = None,
    home: HomeOpt = None,
) -> None:
    """Add a data set from OpenAI fine-tuning chat JSONL or plain text (one per paragraph)."""
    limit = int(settings_from(config, home).tuning.max_file_mb * 2**20)
    with _service(config, home) as service:
        data = read_bounded(file, limit)
        options = _options(eval_split, redact, owner, share)
        _report(service.add(local_operator(), name, data, format, file.name, options))


@data_app.command("from-feedback")
def from_feedback(
    name: str,
    since: Annotated[str, typer.Option("--since", help="30d, 12h, 2w or a date.")] = "30d",
    min_rating: Annotated[
        int, typer.Option("--min-rating", min=-1, max=1, help="1: liked answers only.")
    ] = 1,
    eval_split: EvalOpt = 0.0,
    redact: RedactOpt = False,
    owner: OwnerOpt = None,
    share: ShareOpt = None,
    config: ConfigOpt = None,
    home: HomeOpt = None,
) -> None:
    """A chat data set of rated answers whose text was kept; corrected answers preferred."""
    with _service(config, home) as service:
        options = _options(eval_split, redact, owner, share)
        _report(service.from_feedback(local_operator(), name, since, min_rating, options))


@data_app.command("from-collection")
def from_collection(
    name: str,
    collection: str,
    eval_split: EvalOpt = 0.0,
    redact: RedactOpt = False,
    owner: OwnerOpt = None,
    share: ShareOpt = None,
    config: ConfigOpt = None,
    home: HomeOpt = None,
) -> None:
    """A plain-text data set (continued pre-training) of a knowledge collection's passages."""
    with _service(config, home) as service:
        options = _options(eval_split, redact, owner, share)
        _report(service.from_collection(local_operator(), name, collection, options))


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


@data_app.command("list")
def list_datasets(config: ConfigOpt = None, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Every data set: name, id, format, examples, owner, groups, created."""
    with _service(config, home) as service:
        rows = service.datasets(local_operator())
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no data set")
    for row in rows:
        groups = ",".join(row["shared_with"]) or "-"
        typer.echo(
            f"{row['name']}  {row['id']}  {row['format']}  {row['train']}+{row['eval']} examples"
            f"  owner {row['owner'] or '-'}  groups {groups}  {_when(row['created_at'])}"
        )


@data_app.command("show")
def show(
    name: str,
    examples: Annotated[int, typer.Option("--examples", min=0, help="Print the first N.")] = 0,
    config: ConfigOpt = None,
    home: HomeOpt = None,
) -> None:
    """A data set's sizes, split, owner and groups (and, with --examples, its first examples)."""
    with _service(config, home) as service:
        typer.echo(json.dumps(service.show(local_operator(), name), indent=2))
        rows = service.examples(local_operator(), name)[:examples] if examples else []
    for split, example in rows:
        typer.echo(f"[{split}] {json.dumps(example, ensure_ascii=False)}")


@data_app.command("rm")
def remove(name: str, config: ConfigOpt = None, home: HomeOpt = None) -> None:
    """Delete a data set with all its examples."""
    with _service(config, home) as service:
        removed = service.remove(local_operator(), name, actor=cli_actor())
    typer.echo(f"removed {removed['name']} ({removed['examples']} examples)")
