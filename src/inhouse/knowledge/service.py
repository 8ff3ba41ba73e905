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
from inhouse.knowledge.access import may_read, readable_ids
from inhouse.knowledge.catalog import (
    by_source,
    document_view,
    find_collection,
    find_document,
    get_collection,
    readers,
    summary,
)
from inhouse.knowledge.connectors import Connectors, SourceConfig
from inhouse.knowledge.evaluate import Evaluation, Question, evaluate
from inhouse.knowledge.folders import Unreadable, read_bounded, walk
from inhouse.knowledge.index import delete_chunks, drop_fulltext, flush_log, merge_fulltext
from inhouse.knowledge.ingest import FAILED, Ingestor, Outcome, Target, storable
from inhouse.knowledge.row_sync import Progress as RowProgress
from inhouse.knowledge.search import Hit, Mode, search
from inhouse.knowledge.uploads import Receiving, UploadStore, upload_source
from inhouse.knowledge.vault import Vault
from inhouse.store.db import Database
from inhouse.store.tables import (
    GroupCollection,
    KnowledgeCollection,
    KnowledgeDocument,
)

MAX_TOP_K = 100


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
        vault = Vault(settings.connector_key_file)
        self._connectors = Connectors(db, audit, self._ingestor, vault)
        limit = int(settings.max_file_mb * 2**20)
        self.uploads = UploadStore(settings.files_dir, limit) if settings.files_dir else None

    # ----- collections -------------------------------------------------------------------

    def create(self, actor: str, name: str, group: str, ip: str | None = None) -> None:
        """A new, empty collection; its owner group is granted read access."""
        check_name("collection", name)
        with self.db.write() as session:
            if find_collection(session, name) is not None:
                raise Conflict(f"a collection named {name!r} exists already")
            directory = Directory(session, self.audit, actor, ip)
            owner = directory.group(group)
            session.add(
                KnowledgeCollection(name=name, owner_group_id=owner.id, created_at=time.time())
            )
            session.flush()
            self.audit.record(session, actor, "knowledge.create", name, {"group": group}, ip)
            directory.grant(group, name)

    def collections(self) -> list[dict[str, Any]]:
        """Every collection with its owner, readers and sizes (no content)."""
        with self.db.read() as session:
            query = select(KnowledgeCollection).order_by(KnowledgeCollection.name)
            return [summary(session, c) for c in list(session.scalars(query))]

    def readable(self, principal: Principal) -> set[str]:
        """The names of the collections whose content the principal may read."""
        with self.db.read() as session:
            query = select(KnowledgeCollection.name).where(may_read(principal, self.settings))
            return set(session.scalars(query))

    def show(self, name: str) -> dict[str, Any]:
        with self.db.read() as session:
            return summary(session, get_collection(session, name))

    def documents(self, name: str) -> list[dict[str, Any]]:
        with self.db.read() as session:
            collection = get_collection(session, name)
            rows = session.scalars(
                select(KnowledgeDocument)
                .where(KnowledgeDocument.collection_id == collection.id)
                .order_by(KnowledgeDocument.source)
            )
            return [document_view(d) for d in rows]

    def remove(self, actor: str, name: str, ip: str | None = None) -> None:
        """Delete the collection with every document, chunk, vector, full-text row, grant and
        uploaded file."""
        with self.db.write() as session:
            collection = get_collection(session, name)
            collection_id = collection.id
            ids = list(
                session.scalars(
                    select(KnowledgeDocument.id).where(
                        KnowledgeDocument.collection_id == collection.id
                    )
                )
            )
            # its full-text table goes whole, first, so no row of it is deleted one by one
            drop_fulltext(session, collection_id)
            delete_chunks(session, document_ids=ids)
            session.execute(
                delete(KnowledgeDocument).where(KnowledgeDocument.collection_id == collection.id)
            )
            revoked = readers(session, name)
            session.execute(delete(GroupCollection).where(GroupCollection.collection == name))
            session.delete(collection)
            detail = {"documents": len(ids), "revoked": revoked}
            self.audit.record(session, actor, "knowledge.delete", name, detail, ip)
        flush_log(self.db)
        if self.uploads is not None:
            self.uploads.drop(collection_id)

    def remove_document(self, actor: str, name: str, document: str, ip: str | None = None) -> None:
        """Delete one document (by id or source) with its chunks, vectors, full-text rows and
        uploaded file."""
        with self.db.write() as session:
            collection = get_collection(session, name)
            found = find_document(session, collection.id, document)
            collection_id, digest = collection.id, found.content_hash
            self._delete_documents(session, actor, collection, [found], ip)
        flush_log(self.db)
        self._release(collection_id, digest)

    def _delete_documents(
        self,
        session: Session,
        actor: str,
        collection: KnowledgeCollection,
        documents: list[KnowledgeDocument],
        ip: str | None = None,
    ) -> None:
        delete_chunks(session, document_ids=[d.id for d in documents])
        for document in documents:
            session.delete(document)
        session.flush()
        merge_fulltext(session, [collection.id])
        for document in documents:
            detail = {
                "collection": collection.name,
                "document": document.id,
                "source": document.source,
            }
            self.audit.record(
                session, actor, "knowledge.document.delete", document.source, detail, ip
            )

    # ----- ingestion ---------------------------------------------------------------------

    def add(
        self, actor: str, name: str, path: Path, progress: Progress | None = None
    ) -> SyncReport:
        """Index the files under `path` (or the file): new and changed ones are (re-)embedded,
        unchanged ones skipped, and documents under `path` whose file is gone are deleted."""
        with self.db.read() as session:
            collection = get_collection(session, name)
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
        if not storable(source):
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

    # ----- uploads -----------------------------------------------------------------------

    def receive(self, name: str) -> Receiving:
        """A private file to stream an upload into, in the collection's folder."""
        if self.uploads is None:
            raise InvalidRequest("this server keeps no uploaded files (no knowledge.files_dir)")
        with self.db.read() as session:
            return self.uploads.receive(get_collection(session, name).id)

    def upload(
        self, actor: str, name: str, filename: str, received: Receiving, ip: str | None = None
    ) -> dict[str, Any]:
        """Index a finished upload as the document named by the client's file name (data,
        never a path); the file is kept (under its content hash) only if it was indexed."""
        assert self.uploads is not None  # receive() said so
        try:
            source = upload_source(filename)
            digest = received.finish()
            with self.db.read() as session:
                collection = get_collection(session, name)
                if str(collection.id) != received.folder.name:
                    raise NotFound(f"no collection named {name!r}")
                target = Target(collection.id, collection.name, actor, ip)
                known = session.scalar(by_source(collection.id, source))
                before = known.content_hash if known is not None else ""
            self._ingestor.ingest(target, source, received.read())
            with self.db.read() as session:
                document = session.scalar(by_source(target.collection_id, source))
                if document is None:  # deleted meanwhile
                    raise NotFound(f"the document {source!r} was deleted while it was indexed")
                view = document_view(document)
            if view["status"] != FAILED:
                self.uploads.keep(received, digest)
        finally:
            received.discard()
        if before != digest:
            self._release(target.collection_id, before)
        return view

    def _release(self, collection_id: int, digest: str) -> None:
        """Delete the uploaded file `digest` of the collection once no document has it."""

        def referenced() -> bool:
            with self.db.read() as session:
                query = select(KnowledgeDocument.id).where(
                    KnowledgeDocument.collection_id == collection_id,
                    KnowledgeDocument.content_hash == digest,
                )
                return session.scalar(query.limit(1)) is not None

        if self.uploads is not None:
            self.uploads.release(collection_id, digest, referenced)

    def sync_status(self, name: str) -> dict[str, Any]:
        """The collection's sizes, when a document last changed (None: never) and, under
        "sync", its SQL connector's last run, counts, last error and next run (None: none)."""
        with self.db.read() as session:
            collection = get_collection(session, name)
            sizes = summary(session, collection)
            last = session.scalar(
                select(func.max(KnowledgeDocument.updated_at)).where(
                    KnowledgeDocument.collection_id == collection.id
                )
            )
        counts = {k: sizes[k] for k in ("documents", "failed", "chunks")}
        return {"collection": name, **counts, "last_change_at": last, "sync": sizes["sync"]}

    # ----- SQL connectors ----------------------------------------------------------------

    def connect(
        self, actor: str, name: str, source: SourceConfig, group: str | None = None
    ) -> dict[str, Any]:
        """Feed collection `name` from a SQL source (checked read-only first); the collection
        is created for `group` if it does not exist. Returns the connector's status."""
        url = self._connectors.check(source)
        with self.db.read() as session:
            exists = find_collection(session, name) is not None
        if not exists:
            if group is None:
                raise NotFound(f"no collection named {name!r}: give --group to create it")
            self.create(actor, name, group)
        self._connectors.save(actor, name, source, url)
        return self._connectors.status(name)

    def sync(self, actor: str, name: str, progress: RowProgress | None = None) -> dict[str, Any]:
        """Sync the collection from its connector's source; the connector's status after it
        says how it ended (a failing source is recorded, not raised)."""
        return self._connectors.sync(actor, name, progress)

    def due_syncs(self, now: float) -> tuple[list[str], float | None]:
        """The collections whose scheduled sync is due, and when the next one falls due."""
        return self._connectors.due(now)

    # ----- reading -----------------------------------------------------------------------

    def search(
        self,
        principal: Principal,
        query: str,
        collections: Collection[str] | None = None,
        top_k: int = 5,
        mode: Mode = Mode.HYBRID,
        actor: str | None = None,
        ip: str | None = None,
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
            hits = search(session, readable, query, vector, top_k, mode, self.db.read)
        with self.db.write() as session:
            detail = {
                "collections": sorted(collections) if collections is not None else None,
                "documents": sorted({h.document_id for h in hits}),
            }
            self.audit.record(session, actor or principal.actor, "knowledge.search", "", detail, ip)
        return hits

    def evaluate(
        self,
        principal: Principal,
        name: str,
        questions: list[Question],
        top_k: int = 10,
        actor: str | None = None,
    ) -> Evaluation:
        """Recall@k and MRR of every search mode on the collection, for questions whose
        answering documents are known; only what the principal may read is searched."""
        if not 1 <= top_k <= MAX_TOP_K:
            raise InvalidRequest(f"top_k must be between 1 and {MAX_TOP_K}", param="top_k")
        if not questions:
            raise InvalidRequest("there is no question to evaluate", param="questions")
        vectors = self._embedder().embed([q.text for q in questions])
        readable = readable_ids(principal, self.settings, [name])
        with self.db.read() as session:
            result = evaluate(session, readable, questions, vectors, top_k)
        with self.db.write() as session:
            detail = {"questions": len(questions), "top_k": top_k}
            self.audit.record(session, actor or principal.actor, "knowledge.eval", name, detail)
        return result
