"""One sync of a SQL source's rows into a collection: each row a document, written in its own
transaction; only changed rows are re-embedded (in batches); gone rows are removed.

A row's document is its `column: value` lines; its source is `sql:<label>/<row id>` and its
chunks carry the row id as their location. With an updated-at column, only rows at or
past the last sync's high-water mark (plus ids the index lacks) are read; without one, every
row is read and its hash decides. Removal runs only after every row was read, so a source
that fails mid-sync never makes the index lose a row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, select

from inhouse.errors import InvalidRequest
from inhouse.knowledge.blocks import Block, Kind, Parsed
from inhouse.knowledge.index import delete_chunks, flush_log, merge_fulltext
from inhouse.knowledge.ingest import Built, Ingestor, Outcome, Target, storable
from inhouse.knowledge.sql_source import Part, ids, rows, rows_by_id
from inhouse.store.tables import KnowledgeDocument

SOURCE_PREFIX = "sql:"
BATCH_ROWS = 32  # rows embedded in one model call (each still its own transaction)


@dataclass
class Tally:
    """What a sync did so far."""

    seen: int = 0
    changed: int = 0
    failed: int = 0  # rows without an id, or with one too long to name a document
    removed: int = 0


@dataclass
class Plan:
    """What to read: the parts, the id and updated-at columns, the last marks by label."""

    parts: list[Part]
    id_column: str
    updated_column: str | None
    marks: dict[str, Any] = field(default_factory=dict)


Progress = Callable[[Tally], None]  # called after every row; may raise to stop the sync


def source_of(label: str, row_id: str) -> str:
    return f"{SOURCE_PREFIX}{label}/{row_id}"


def render(label: str, row_id: str, row: dict[str, Any]) -> tuple[Parsed, bytes]:
    """The row as a document (one block per non-empty column) and the bytes it hashes as."""
    blocks = []
    for column, value in row.items():
        shown = _text(value)
        if shown:
            blocks.append(Block(Kind.ROW, f"{column}: {shown}", row=row_id))
    data = "\n".join(b.text for b in blocks).encode("utf-8")
    return Parsed(f"{label} {row_id}", blocks), data


def _text(value: Any) -> str:
    if value is None or isinstance(value, bytes | bytearray | memoryview):
        return ""  # binary columns carry no text to search
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value).replace("\x00", "").strip()


def encode_mark(value: Any, column: str) -> dict[str, Any] | None:
    """A high-water mark as JSON, keeping its type so it binds back as the same type."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, date):
        return {"date": value.isoformat()}
    if isinstance(value, Decimal):
        return {"decimal": str(value)}
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        return {"value": value}
    raise InvalidRequest(
        f"the column {column!r} holds {type(value).__name__} values, which cannot mark what "
        "changed: use a timestamp or number column, or none (rows are then compared by hash)"
    )


def decode_mark(mark: dict[str, Any] | None) -> Any:
    if not mark:
        return None
    if "datetime" in mark:
        return datetime.fromisoformat(mark["datetime"])
    if "date" in mark:
        return date.fromisoformat(mark["date"])
    if "decimal" in mark:
        return Decimal(mark["decimal"])
    return mark["value"]


class RowSync:
    """Reads a source's parts over one read-only connection and indexes what changed."""

    def __init__(self, ingestor: Ingestor, target: Target, plan: Plan, progress: Progress) -> None:
        self.ingestor = ingestor
        self.target = target
        self.plan = plan
        self.progress = progress
        self.tally = Tally()
        self._batch: list[Built] = []  # read, not yet indexed

    def run(self, connection: Connection) -> dict[str, Any]:
        """Index every part's changed rows, then remove the gone ones; the new marks."""
        present: dict[str, set[str]] = {}
        marks: dict[str, Any] = {}
        for part in self.plan.parts:
            present[part.label], marks[part.label] = self._part(connection, part)
        self.tally.removed = self._remove_gone(present)
        return {label: mark for label, mark in marks.items() if mark is not None}

    def _part(self, connection: Connection, part: Part) -> tuple[set[str], Any]:
        column = self.plan.updated_column
        mark = decode_mark(self.plan.marks.get(part.label)) if column else None
        since = (column, mark) if column is not None and mark is not None else None
        every = ids(connection, part, self.plan.id_column) if since is not None else None
        known = self._indexed(part.label)
        seen: set[str] = set()
        high = mark
        for row in rows(connection, part, since):
            self._take(part, row, seen)
            if column is not None and row.get(column) is not None:
                high = row[column] if high is None else max(high, row[column])
        self._flush()
        if every is not None:
            missing = sorted(every - seen - known)
            for row in rows_by_id(connection, part, self.plan.id_column, missing):
                self._take(part, row, seen)
            self._flush()
            seen = every
        return seen, encode_mark(high, column) if column is not None else None

    def _take(self, part: Part, row: dict[str, Any], seen: set[str]) -> None:
        """Count the row and queue its document (indexed when the batch is full)."""
        self.tally.seen += 1
        value = row.get(self.plan.id_column)
        source = source_of(part.label, str(value))
        if value is None or not storable(source):
            self.tally.failed += 1
        else:
            row_id = str(value)
            parsed, data = render(part.label, row_id, row)
            digest = hashlib.sha256(data).hexdigest()
            self._batch.append(Built(source, parsed, digest, len(data)))
            seen.add(row_id)
            if len(self._batch) >= BATCH_ROWS:
                self._flush()
        self.progress(self.tally)

    def _flush(self) -> None:
        if self._batch:
            outcomes = self.ingestor.ingest_built(self.target, self._batch)
            self.tally.changed += sum(o in (Outcome.ADDED, Outcome.UPDATED) for o in outcomes)
            self._batch = []

    def _indexed(self, label: str) -> set[str]:
        """The row ids of `label` the collection holds."""
        prefix = source_of(label, "")
        with self.ingestor.db.read() as session:
            sources = session.scalars(
                select(KnowledgeDocument.source).where(
                    KnowledgeDocument.collection_id == self.target.collection_id,
                    KnowledgeDocument.source.startswith(prefix, autoescape=True),
                )
            )
            return {s[len(prefix) :] for s in sources}

    def _remove_gone(self, present: dict[str, set[str]]) -> int:
        """Delete the row documents whose row (or whole part) the source no longer has."""
        db, audit = self.ingestor.db, self.ingestor.audit
        with db.write() as session:
            query = select(KnowledgeDocument).where(
                KnowledgeDocument.collection_id == self.target.collection_id,
                KnowledgeDocument.source.startswith(SOURCE_PREFIX, autoescape=True),
            )
            gone = [d for d in session.scalars(query) if not _present(d.source, present)]
            if not gone:
                return 0
            delete_chunks(session, document_ids=[d.id for d in gone])
            for document in gone:
                detail = {"collection": self.target.collection, "document": document.id}
                audit.record(
                    session, self.target.actor, "knowledge.document.delete", document.source, detail
                )
                session.delete(document)
            session.flush()
            merge_fulltext(session, [self.target.collection_id])
        flush_log(db)
        return len(gone)


def _present(source: str, present: dict[str, set[str]]) -> bool:
    """Whether the row document `source` still has its row (other documents: always)."""
    label, slash, row_id = source[len(SOURCE_PREFIX) :].partition("/")
    # an uploaded file may be named "sql:x", but no file's name holds a slash
    return not slash or row_id in present.get(label, set())
