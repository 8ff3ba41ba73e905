"""The knowledge domain API that the CLI (and later the HTTP API) call.

Managing collections (create, add, list, delete) is for whoever runs the command; reading
their content (search) is for a principal, limited in SQL to what it may read. Every change
is audited in the transaction that makes it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from inhouse.audit.trail import AuditTrail
from inhouse.auth.directory import Directory
from inhouse.auth.names import check_name
from inhouse.auth.policy import Principal
from inhouse.config import KnowledgeSettings
from inhouse.embeddings.service import Embedder
from inhouse.errors import Conflict, InvalidRequest, NotFound
from inhouse.knowledge.access import readable_ids
from inhouse.knowledge.folders import Unreadable, read_bounded, walk
from inhouse.knowledge.index import delete_chunks, flush_log, merge_fulltext
from inhouse.knowledge.ingest import FAILED, Ingestor, Outcome, Target
from inhouse.knowledge.search import Hit, Mode, search
from inhouse.store.db import Database
from inhouse.store.tables import (
    Group,
    GroupCollection,
    KnowledgeCollection,
    KnowledgeDocument,
)

MAX_TOP_K = 100
MAX_SOURCE_BYTES = 1024  # KnowledgeDocument.source


@dataclass
class SyncReport:
    """What one `add` of a folder or file did, file by file."""

    counts: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))
    removed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)


Progress = Callable[[int, int, str, Outcome], None]  # (done, total, source, outcome)


class KnowledgeService:
    def __init__(
        self,
        db: Database,
        audit: AuditTrail,
        settings: KnowledgeSettings,
        embedder: Callable[[], Embedder],
    ) -> None:
        self.db = db
        self.audit = audit
        self.settings = settings
        self._embedder = embedder
        self._ingestor = Ingestor(db, audit, settings, embedder)

    # ----- collections -------------------------------------------------------------------

    def create(self, actor: str, name: str, group: str) -> None:
        """A new, empty collection; its owner group is granted read access."""
        check_name("collection", name)
        with self.db.write() as session:
            if _find(session, name) is not None:
                raise Conflict(f"a collection named {name!r} exists already")
            directory = Directory(session, self.audit, actor)
            owner = directory.group(group)
            session.add(
                KnowledgeCollection(name=name, owner_group_id=owner.id, created_at=time.time())
            )
            session.flush()
            self.audit.record(session, actor, "knowledge.create", name, {"group": group})
            directory.grant(group, name)

    def collections(self) -> list[dict[str, Any]]:
        """Every collection with its owner, readers and sizes (no content)."""
        with self.db.read() as session:
            query = select(KnowledgeCollection).order_by(KnowledgeCollection.name)
            return [_summary(session, c) for c in list(session.scalars(query))]

    def show(self, name: str) -> dict[str, Any]:
        with self.db.read() as session:
            return _summary(session, _get(session, name))

    def documents(self, name: str) -> list[dict[str, Any]]:
        with self.db.read() as session:
            collection = _get(session, name)
            rows = session.scalars(
                select(KnowledgeDocument)
                .where(KnowledgeDocument.collection_id == collection.id)
                .order_by(KnowledgeDocument.source)
            )
            return [_document_view(d) for d in rows]

    def remove(self, actor: str, name: str) -> None:
        """Delete the collection with every document, chunk, vector, full-text row and grant."""
        with self.db.write() as session:
            collection = _get(session, name)
            ids = list(
                session.scalars(
                    select(KnowledgeDocument.id).where(
                        KnowledgeDocument.collection_id == collection.id
                    )
                )
            )
            delete_chunks(session, document_ids=ids)
            session.execute(
                delete(KnowledgeDocument).where(KnowledgeDocument.collection_id == collection.id)
            )
            revoked = _readers(session, name)
            session.execute(delete(GroupCollection).where(GroupCollection.collection == name))
            session.delete(collection)
            merge_fulltext(session)
            detail = {"documents": len(ids), "revoked": revoked}
            self.audit.record(session, actor, "knowledge.delete", name, detail)
        flush_log(self.db)

    def remove_document(self, actor: str, name: str, document: str) -> None:
        """Delete one document (by id or source) with its chunks, vectors and full-text rows."""
        with self.db.write() as session:
            collection = _get(session, name)
            found = _find_document(session, collection.id, document)
            self._delete_documents(session, actor, collection, [found])
        flush_log(self.db)

    def _delete_documents(
        self,
        session: Session,
        actor: str,
        collection: KnowledgeCollection,
        documents: list[KnowledgeDocument],
    ) -> None:
        delete_chunks(session, document_ids=[d.id for d in documents])
        for document in documents:
            session.delete(document)
        session.flush()
        merge_fulltext(session)
        for document in documents:
            detail = {
                "collection": collection.name,
                "document": document.id,
                "source": document.source,
            }
            self.audit.record(session, actor, "knowledge.document.delete", document.source, detail)

    # ----- ingestion ---------------------------------------------------------------------

    def add(
        self, actor: str, name: str, path: Path, progress: Progress | None = None
    ) -> SyncReport:
        """Index the files under `path` (or the file): new and changed ones are (re-)embedded,
        unchanged ones skipped, and documents under `path` whose file is gone are deleted."""
        with self.db.read() as session:
            collection = _get(session, name)
            target = Target(collection.id, collection.name, actor)
        try:
            entries = list(walk(path))
        except OSError as exc:
            raise InvalidRequest(
                f"cannot read {str(path)!r}: {exc.strerror or exc}", param="path"
            ) from None
        report = SyncReport()
        for done, entry in enumerate(entries, start=1):
            outcome = self._take(target, entry.path, entry.problem, report)
            report.counts[outcome] += 1
            if progress is not None:
                progress(done, len(entries), str(entry.path), outcome)
        report.removed = self._remove_missing(
            actor, collection, path.resolve(), {str(e.path) for e in entries}
        )
        return report

    def _take(self, target: Target, path: Path, problem: str | None, report: SyncReport) -> Outcome:
        source = str(path)
        if not _storable(source):
            # not even a failed document can be recorded under this name: report it only
            shown = os.fsencode(source).decode("utf-8", "backslashreplace")
            report.failures.append((shown, "the path is not valid UTF-8 or too long"))
            return Outcome.FAILED
        try:
            if problem is not None:
                raise Unreadable(problem)
            data = read_bounded(path, int(self.settings.max_file_mb * 2**20))
        except Unreadable as exc:
            report.failures.append((source, exc.message))
            return self._ingestor.fail(target, source, exc.message)
        outcome, reason = self._ingestor.ingest(target, source, data)
        if reason is not None:
            report.failures.append((source, reason))
        return outcome

    def _remove_missing(
        self, actor: str, collection: KnowledgeCollection, root: Path, seen: set[str]
    ) -> int:
        """Delete the documents under `root` whose files the walk no longer found."""
        prefix = str(root).rstrip("/") + "/"
        with self.db.write() as session:
            documents = [
                d
                for d in session.scalars(
                    select(KnowledgeDocument).where(
                        KnowledgeDocument.collection_id == collection.id
                    )
                )
                if (d.source == str(root) or d.source.startswith(prefix)) and d.source not in seen
            ]
            if documents:
                self._delete_documents(session, actor, collection, documents)
        if documents:
            flush_log(self.db)
        return len(documents)

    # ----- reading -----------------------------------------------------------------------

    def search(
        self,
        principal: Principal,
        query: str,
        collections: Collection[str] | None = None,
        top_k: int = 5,
        mode: Mode = Mode.HYBRID,
        actor: str | None = None,
    ) -> list[Hit]:
        """The best `top_k` passages of the named collections (None: all) the principal may
        read; a collection it may not read behaves exactly like one that does not exist."""
        if not 1 <= top_k <= MAX_TOP_K:
            raise InvalidRequest(f"top_k must be between 1 and {MAX_TOP_K}", param="top_k")
        if not query.strip():
            raise InvalidRequest("the query is empty", param="query")
        vector = None
        if mode is not Mode.KEYWORD:
            vector = self._embedder().embed([query])[0]
        readable = readable_ids(principal, self.settings, collections)
        with self.db.read() as session:
            hits = search(session, readable, query, vector, top_k, mode)
        with self.db.write() as session:
            detail = {
                "collections": sorted(collections) if collections is not None else None,
                "documents": sorted({h.document_id for h in hits}),
            }
            self.audit.record(session, actor or principal.actor, "knowledge.search", "", detail)
        return hits


def _storable(source: str) -> bool:
    """Whether the document table can hold `source` (UTF-8, within its column's length)."""
    try:
        return len(source.encode("utf-8")) <= MAX_SOURCE_BYTES
    except UnicodeEncodeError:  # a file name in another encoding, decoded with surrogates
        return False


def _find(session: Session, name: str) -> KnowledgeCollection | None:
    return session.scalar(select(KnowledgeCollection).where(KnowledgeCollection.name == name))


def _get(session: Session, name: str) -> KnowledgeCollection:
    found = _find(session, name)
    if found is None:
        raise NotFound(f"no collection named {name!r}")
    return found


def _find_document(session: Session, collection_id: int, document: str) -> KnowledgeDocument:
    query = select(KnowledgeDocument).where(KnowledgeDocument.collection_id == collection_id)
    if document.isdigit():
        found = session.scalar(query.where(KnowledgeDocument.id == int(document)))
    else:
        found = session.scalar(query.where(KnowledgeDocument.source == document))
    if found is None:
        raise NotFound(f"no document {document!r} in this collection")
    return found


def _readers(session: Session, collection: str) -> list[str]:
    """The groups granted read access to the collection named `collection`."""
    query = (
        select(Group.name)
        .join(GroupCollection, GroupCollection.group_id == Group.id)
        .where(GroupCollection.collection == collection)
        .order_by(Group.name)
    )
    return list(session.scalars(query))


def _summary(session: Session, collection: KnowledgeCollection) -> dict[str, Any]:
    def count(*where: Any) -> int:
        query = (
            select(func.count())
            .select_from(KnowledgeDocument)
            .where(KnowledgeDocument.collection_id == collection.id, *where)
        )
        return session.scalar(query) or 0

    owner = session.get(Group, collection.owner_group_id) if collection.owner_group_id else None
    chunks = session.scalar(
        select(func.coalesce(func.sum(KnowledgeDocument.chunk_count), 0)).where(
            KnowledgeDocument.collection_id == collection.id
        )
    )
    return {
        "name": collection.name,
        "owner_group": owner.name if owner else None,
        "readers": _readers(session, collection.name),
        "documents": count(),
        "failed": count(KnowledgeDocument.status == FAILED),
        "chunks": int(chunks or 0),
        "created_at": collection.created_at,
    }


def _document_view(document: KnowledgeDocument) -> dict[str, Any]:
    return {
        "id": document.id,
        "source": document.source,
        "title": document.title,
        "size": document.size,
        "status": document.status,
        "error": document.error,
        "chunks": document.chunk_count,
        "updated_at": document.updated_at,
    }
