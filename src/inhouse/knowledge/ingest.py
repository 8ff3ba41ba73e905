"""One document into the index: parse, chunk, embed, then write it all in one transaction.

The slow part (parsing and embedding) runs before the transaction, so the store's write lock
is held only for the inserts. A crash at any point leaves the document either as it was or
fully replaced; re-running finds unchanged files by their content hash and skips them.
"""

from __future__ import annotations

import enum
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sqlalchemy import select
from sqlalchemy.orm import Session

from inhouse.audit.trail import AuditTrail
from inhouse.config import KnowledgeSettings
from inhouse.embeddings.minilm import MAX_TOKENS
from inhouse.embeddings.service import Embedder
from inhouse.knowledge.blocks import Parsed, ParseError
from inhouse.knowledge.chunking import Chunk, chunk
from inhouse.knowledge.index import delete_chunks, write_chunks
from inhouse.knowledge.parsers import parse
from inhouse.store.db import Database
from inhouse.store.tables import KnowledgeDocument

INDEXED, FAILED = "indexed", "failed"
# what the count of a text cut at the model's limit stands for: "too long, split it"
SATURATED = 1 << 30


class Outcome(enum.StrEnum):
    ADDED = "added"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    FAILED = "failed"


@dataclass(frozen=True)
class Version:
    """What a document's row and index become: its chunks, or why it could not be read."""

    digest: str
    size: int
    title: str = ""
    chunks: Sequence[Chunk] = ()
    vectors: npt.NDArray[np.float32] | None = None
    error: str | None = None


@dataclass(frozen=True)
class Built:
    """A document a connector made (not a file): its source name, blocks and content hash."""

    source: str
    parsed: Parsed
    digest: str
    size: int


@dataclass(frozen=True)
class Target:
    """The collection documents go into, and who is adding them (for the audit trail)."""

    collection_id: int
    collection: str
    actor: str
    ip: str | None = None  # the client's address, for changes made over the API


def content_tokens(embedder: Embedder) -> Callable[[Sequence[str]], list[int]]:
    """The chunker's counter: tokens without [CLS]/[SEP]; a text the model cuts counts huge."""

    def count(texts: Sequence[str]) -> list[int]:
        return [n - 2 if n < MAX_TOKENS else SATURATED for n in embedder.count_tokens(texts)]

    return count


MAX_SOURCE_BYTES = 1024  # KnowledgeDocument.source


def storable(source: str) -> bool:
    """Whether the document table can hold `source` (UTF-8, within its column's length)."""
    try:
        return len(source.encode("utf-8")) <= MAX_SOURCE_BYTES
    except UnicodeEncodeError:  # a file name in another encoding, decoded with surrogates
        return False


class Ingestor:
    """Writes documents of any collection; the embedder is built on first use."""

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

    def ingest(self, target: Target, source: str, data: bytes) -> tuple[Outcome, str | None]:
        """Index `data` as the document `source` (a no-op when its bytes are unchanged);
        returns what happened and, if the document stays unreadable, why."""
        digest = hashlib.sha256(data).hexdigest()
        with self.db.read() as session:
            known = _document(session, target.collection_id, source)
            if known is not None and known.content_hash == digest:
                return Outcome.UNCHANGED, known.error
        try:
            parsed = parse(source, data, max_unpacked=int(self.settings.max_unpacked_mb * 2**20))
        except ParseError as exc:
            failed = Version(digest, len(data), error=exc.message)
            return self._write(target, source, failed), exc.message
        return self._write(target, source, self._version(parsed, digest, len(data))), None

    def ingest_built(self, target: Target, documents: Sequence[Built]) -> list[Outcome]:
        """Index documents a connector built (database rows), each in its own transaction;
        those whose digest is the one indexed already are skipped. The changed ones are
        embedded together (one model call), which is what makes many small rows fast."""
        query = select(KnowledgeDocument.source, KnowledgeDocument.content_hash).where(
            KnowledgeDocument.collection_id == target.collection_id,
            KnowledgeDocument.source.in_([d.source for d in documents]),
        )
        with self.db.read() as session:
            indexed = {source: digest for source, digest in session.execute(query)}
        changed = [d for d in documents if indexed.get(d.source) != d.digest]
        if not changed:
            return [Outcome.UNCHANGED] * len(documents)
        embedder = self._embedder()
        count = content_tokens(embedder)
        chunked = [
            chunk(d.parsed, count, self.settings.chunk_tokens, self.settings.overlap_tokens)
            for d in changed
        ]
        vectors = embedder.embed([c.text for chunks in chunked for c in chunks])
        outcomes = dict.fromkeys((d.source for d in documents), Outcome.UNCHANGED)
        start = 0
        for document, chunks in zip(changed, chunked, strict=True):
            mine = vectors[start : start + len(chunks)]
            start += len(chunks)
            version = Version(document.digest, document.size, document.parsed.title, chunks, mine)
            outcomes[document.source] = self._write(target, document.source, version)
        return [outcomes[d.source] for d in documents]

    def _version(self, parsed: Parsed, digest: str, size: int) -> Version:
        """Chunk and embed `parsed` (the slow part, outside any transaction)."""
        embedder = self._embedder()
        chunks = chunk(
            parsed,
            content_tokens(embedder),
            self.settings.chunk_tokens,
            self.settings.overlap_tokens,
        )
        vectors = embedder.embed([c.text for c in chunks])
        return Version(digest, size, parsed.title, chunks, vectors)

    def fail(self, target: Target, source: str, reason: str) -> Outcome:
        """Record that `source` could not be taken in (its old chunks, if any, are removed)."""
        with self.db.read() as session:
            known = _document(session, target.collection_id, source)
            if known is not None and known.status == FAILED and known.error == reason:
                return Outcome.UNCHANGED
        return self._write(target, source, Version("", 0, error=reason))

    def _write(self, target: Target, source: str, version: Version) -> Outcome:
        error = version.error
        with self.db.write() as session:
            document = _document(session, target.collection_id, source)
            outcome = Outcome.FAILED if error else Outcome.ADDED
            if document is None:
                document = KnowledgeDocument(collection_id=target.collection_id, source=source)
                session.add(document)
            else:
                delete_chunks(session, document_ids=[document.id])
                outcome = Outcome.FAILED if error else Outcome.UPDATED
            document.content_hash, document.size = version.digest, version.size
            document.title = version.title[:512]
            document.status, document.error = (FAILED, error) if error else (INDEXED, None)
            document.chunk_count, document.updated_at = len(version.chunks), time.time()
            session.flush()
            if version.vectors is not None:
                write_chunks(
                    session, document.id, target.collection_id, version.chunks, version.vectors
                )
            detail = {"collection": target.collection, "document": document.id, "source": source}
            detail |= {"error": error} if error else {"chunks": len(version.chunks)}
            self.audit.record(
                session, target.actor, f"knowledge.document.{outcome}", source, detail, target.ip
            )
        return outcome


def _document(session: Session, collection_id: int, source: str) -> KnowledgeDocument | None:
    return session.scalar(
        select(KnowledgeDocument).where(
            KnowledgeDocument.collection_id == collection_id, KnowledgeDocument.source == source
        )
    )
