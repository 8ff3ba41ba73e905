"""`inhouse knowledge ...`: collections of files, indexed for search, from the server's machine.

Changes are audited as `cli:<os user>`. `search` runs as the local operator, who holds the
database file anyway; people on the API read only what their groups are granted.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from inhouse.auth.authenticate import local_operator
from inhouse.cli.context import audited_store, cli_actor
from inhouse.cli.options import ConfigOpt, HomeOpt, refusals, settings_from
from inhouse.embeddings.service import EmbeddingService
from inhouse.errors import InvalidRequest
from inhouse.knowledge.connectors import SourceConfig, parse_interval
from inhouse.knowledge.evaluate import Evaluation, Question, as_json, parse_questions
from inhouse.knowledge.ingest import Outcome
from inhouse.knowledge.row_sync import Tally
from inhouse.knowledge.search import Hit, Mode
from inhouse.knowledge.service import KnowledgeService

knowledge_app = typer.Typer(
    help="Collections of your files, searchable under group permissions.", no_args_is_help=True
)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
SNIPPET_CHARS = 160
PROGRESS_ROWS = 100  # `sync` reports every this many rows


@contextmanager
def _service(config: Path | None, home: Path | None) -> Iterator[KnowledgeService]:
    settings = settings_from(config, home)
    with refusals(), audited_store(settings) as (db, audit):
        embeddings = EmbeddingService(settings.embeddings)
        yield KnowledgeService(db, audit, settings.knowledge, embeddings.shared)


def _shown(path: str) -> str:
    """A path printable on any terminal: bytes that are not UTF-8 appear as \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def _table(rows: Sequence[Any], columns: dict[str, Callable[[Any], str]]) -> None:
    table = [list(columns)] + [[render(row) for render in columns.values()] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


COLLECTION_COLUMNS: dict[str, Callable[[Any], str]] = {
    "name": lambda c: c["name"],
    "owner": lambda c: c["owner_group"] or "-",
    "readers": lambda c: ",".join(c["readers"]) or "-",
    "documents": lambda c: (
        str(c["documents"]) + (f" ({c['failed']} failed)" if c["failed"] else "")
    ),
    "chunks": lambda c: str(c["chunks"]),
    "created": lambda c: _when(c["created_at"]),
    "sync": lambda c: c["sync"]["status"] if c.get("sync") else "-",
}
DOCUMENT_COLUMNS: dict[str, Callable[[Any], str]] = {
    "id": lambda d: str(d["id"]),
    "status": lambda d: d["status"],
    "chunks": lambda d: str(d["chunks"]),
    "size": lambda d: str(d["size"]),
    "source": lambda d: d["source"],
    "error": lambda d: d["error"] or "",
}


def _where(location: dict[str, Any]) -> str:
    parts = [" > ".join(location.get("headings", []))]
    parts += [f"p. {location['page']}" if "page" in location else ""]
    parts += [f"row {location['row']}" if "row" in location else ""]
    return ", ".join(p for p in parts if p) or "-"


HIT_COLUMNS: dict[str, Callable[[Any], str]] = {
    "score": lambda h: f"{h.score:.4f}",
    "collection": lambda h: h.collection,
    "document": lambda h: Path(h.source).name,
    "where": lambda h: _where(h.location),
    "text": lambda h: " ".join(h.text.split())[:SNIPPET_CHARS],
}


@knowledge_app.command("create")
def create(
    name: str,
    group: Annotated[str, typer.Option("--group", help="Owner group: granted read access.")],
    config: ConfigOpt = None,
    home: HomeOpt = None,
) -> None:
    """Create an empty collection that the group may read."""
    with _service(config, home) as service:
        service.create(cli_actor(), name, group)
        typer.echo(f"created {name} (readable by group {group})")


@knowledge_app.command("add")
def add(name: str, path: Path, config: ConfigOpt = None, home: HomeOpt = None) -> None:
    """Index a file, or a folder recursively; again later, it re-syncs the folder."""

    def progress(done: int, total: int, source: str, outcome: Outcome) -> None:
        typer.echo(f"[{done}/{total}] {outcome.value:<9} {_shown(source)}", err=True)

    with _service(config, home) as service:
        report = service.add(cli_actor(), name, path, progress)
    counts = ", ".join(f"{n} {o.value}" for o, n in report.counts.items())
    typer.echo(f"{name}: {counts}, {report.removed} removed")
    for source, reason in report.failures:
        typer.secho(f"failed: {source}: {reason}", fg="yellow", err=True)


@knowledge_app.command("search")
def search(
    name: str,
    query: str,
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=100, help="Passages to show.")] = 5,
    mode: Annotated[Mode, typer.Option(help="hybrid, vector or keyword.")] = Mode.HYBRID,
    config: ConfigOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The passages of the collection that best answer the query."""
    with _service(config, home) as service:
        service.show(name)  # the operator sees every name: say so if it does not exist
        hits: list[Hit] = service.search(
            local_operator(), query, [name], top_k, mode, actor=cli_actor()
        )
        if as_json:
            typer.echo(json.dumps([dataclasses.asdict(h) for h in hits], indent=2))
        elif hits:
            _table(hits, HIT_COLUMNS)
        else:
            typer.echo("no passage matches")


@knowledge_app.command("eval")
def eval_(
    name: str,
    questions: Annotated[Path, typer.Argument(help="JSON lines: {question, expected}.")],
    top_k: Annotated[
        int, typer.Option("--top-k", min=1, max=100, help="Passages searched per question.")
    ] = 10,
    config: ConfigOpt = None,
    home: HomeOpt = None,
    as_json_: JsonOpt = False,
) -> None:
    """Recall@1/5/10 and MRR of hybrid, vector and keyword search on known questions."""
    with _service(config, home) as service:
        service.show(name)
        evaluation = service.evaluate(
            local_operator(), name, _questions(questions), top_k, actor=cli_actor()
        )
        if as_json_:
            typer.echo(json.dumps(as_json(evaluation, name), indent=2))
        else:
            _eval_table(evaluation)


def _questions(path: Path) -> list[Question]:
    try:
        return parse_questions(path.read_text(encoding="utf-8").splitlines())
    except UnicodeDecodeError:
        raise InvalidRequest(f"{_shown(str(path))} is not UTF-8 text") from None


def _figure(metric: str) -> Callable[[dict[str, Any]], str]:
    return lambda row: f"{row[metric]:.3f}"


def _eval_table(evaluation: Evaluation) -> None:
    rows = [{"mode": mode.value, **figures} for mode, figures in evaluation.metrics.items()]
    columns: dict[str, Callable[[Any], str]] = {"mode": lambda r: r["mode"]}
    for metric in list(rows[0])[1:]:
        columns[metric] = _figure(metric)
    typer.echo(f"{len(evaluation.questions)} questions, top {evaluation.top_k} passages")
    _table(rows, columns)


@knowledge_app.command("connect")
def connect(
    name: str,
    url: Annotated[
        str, typer.Option("--url", help="SQLAlchemy URL: postgresql://... or sqlite:///file.db")
    ],
    query: Annotated[
        str | None, typer.Option("--query", help="One SELECT; each row a document.")
    ] = None,
    table: Annotated[
        list[str] | None, typer.Option("--table", help="A table to read whole (repeatable).")
    ] = None,
    every: Annotated[
        str | None, typer.Option("--every", help="Sync interval under `inhouse serve` (15m, 1h).")
    ] = None,
    id_column: Annotated[
        str, typer.Option("--id-column", help="The column naming each row.")
    ] = "id",
    updated_column: Annotated[
        str | None,
        typer.Option(
            "--updated-column", help="Sync only rows changed since the last sync by this column."
        ),
    ] = None,
    allow_writable: Annotated[
        bool,
        typer.Option(
            "--allow-writable", help="Accept a user who can write (reads stay read-only)."
        ),
    ] = False,
    group: Annotated[
        str | None,
        typer.Option(
            "--group", help="Create the collection for this owner group if it does not exist."
        ),
    ] = None,
    config: ConfigOpt = None,
    home: HomeOpt = None,
) -> None:
    """Feed a collection from a SQL database, read-only; the password is stored sealed."""
    with _service(config, home) as service:
        interval = parse_interval(every) if every is not None else None
        source = SourceConfig(
            url, query, tuple(table or ()), id_column, updated_column, interval, allow_writable
        )
        status = service.connect(cli_actor(), name, source, group)
    schedule = f", every {_duration(status['every_s'])}" if status["every_s"] else ""
    typer.echo(f"connected {name} to {status['url']}{schedule}; run: inhouse knowledge sync {name}")


@knowledge_app.command("sync")
def sync(
    name: str, config: ConfigOpt = None, home: HomeOpt = None, as_json_: JsonOpt = False
) -> None:
    """Sync a collection from its SQL source: changed rows re-embedded, deleted rows removed."""

    def progress(tally: Tally) -> None:
        if tally.seen % PROGRESS_ROWS == 0:
            typer.echo(f"{tally.seen} rows read, {tally.changed} changed", err=True)

    with _service(config, home) as service:
        status = service.sync(cli_actor(), name, progress)
    if as_json_:
        typer.echo(json.dumps(status, indent=2))
    else:
        typer.echo(_sync_line(status))
    if status["status"] != "ok":
        typer.secho(f"error: sync of {name} failed: {status['last_error']}", fg="red", err=True)
        raise typer.Exit(1)


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _sync_line(status: dict[str, Any] | None) -> str:
    if status is None:
        return "-"
    line = f"{status['status']}"
    if status["finished_at"]:
        line += f" {_when(status['finished_at'])}"
    return (
        f"{line}: {status['rows_seen']} rows read, {status['rows_changed']} changed, "
        f"{status['rows_removed']} removed"
    )


@knowledge_app.command("list")
def list_(config: ConfigOpt = None, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Every collection with its owner, readers and size."""
    with _service(config, home) as service:
        rows = service.collections()
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
        else:
            _table(rows, COLLECTION_COLUMNS)


@knowledge_app.command("show")
def show(name: str, config: ConfigOpt = None, home: HomeOpt = None) -> None:
    """One collection's owner, readers and size."""
    with _service(config, home) as service:
        typer.echo(json.dumps(service.show(name), indent=2))


@knowledge_app.command("docs")
def docs(
    name: str, config: ConfigOpt = None, home: HomeOpt = None, as_json: JsonOpt = False
) -> None:
    """The collection's documents, with the reason of each failure."""
    with _service(config, home) as service:
        rows = service.documents(name)
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
        else:
            _table(rows, DOCUMENT_COLUMNS)


@knowledge_app.command("rm")
def rm(name: str, config: ConfigOpt = None, home: HomeOpt = None) -> None:
    """Delete the collection, its index and its grants, leaving no trace in the store."""
    with _service(config, home) as service:
        service.remove(cli_actor(), name)
        typer.echo(f"removed {name}")


@knowledge_app.command("rm-doc")
def rm_doc(name: str, document: str, config: ConfigOpt = None, home: HomeOpt = None) -> None:
    """Delete one document (its id or source path) and everything indexed from it."""
    with _service(config, home) as service:
        service.remove_document(cli_actor(), name, document)
        typer.echo(f"removed {document} from {name}")
