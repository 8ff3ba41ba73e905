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
from inhouse.knowledge.ingest import Outcome
from inhouse.knowledge.search import Hit, Mode
from inhouse.knowledge.service import KnowledgeService

knowledge_app = typer.Typer(
    help="Collections of your files, searchable under group permissions.", no_args_is_help=True
)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
SNIPPET_CHARS = 160


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
