"""The knowledge catalogue: finding collections and documents, and how they are shown."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from inhouse.errors import NotFound
from inhouse.knowledge.connectors import connector_view
from inhouse.knowledge.ingest import FAILED
from inhouse.store.tables import Group, GroupCollection, KnowledgeCollection, KnowledgeDocument


def find_collection(session: Session, name: str) -> KnowledgeCollection | None:
    return session.scalar(select(KnowledgeCollection).where(KnowledgeCollection.name == name))


def get_collection(session: Session, name: str) -> KnowledgeCollection:
    found = find_collection(session, name)
    if found is None:
        raise NotFound(f"no collection named {name!r}")
    return found


def by_source(collection_id: int, source: str) -> Select[KnowledgeDocument]:
    return select(KnowledgeDocument).where(
        KnowledgeDocument.collection_id == collection_id, KnowledgeDocument.source == source
    )


def find_document(session: Session, collection_id: int, document: str) -> KnowledgeDocument:
    query = select(KnowledgeDocument).where(KnowledgeDocument.collection_id == collection_id)
    if document.isdigit():
        found = session.scalar(query.where(KnowledgeDocument.id == int(document)))
    else:
        found = session.scalar(query.where(KnowledgeDocument.source == document))
    if found is None:
        raise NotFound(f"no document {document!r} in this collection")
    return found


def readers(session: Session, collection: str) -> list[str]:
    """The groups granted read access to the collection named `collection`."""
    query = (
        select(Group.name)
        .join(GroupCollection, GroupCollection.group_id == Group.id)
        .where(GroupCollection.collection == collection)
        .order_by(Group.name)
    )
    return list(session.scalars(query))


def summary(session: Session, collection: KnowledgeCollection) -> dict[str, Any]:
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
        "readers": readers(session, collection.name),
        "documents": count(),
        "failed": count(KnowledgeDocument.status == FAILED),
        "chunks": int(chunks or 0),
        "created_at": collection.created_at,
        "sync": connector_view(session, collection.id),  # None: no SQL connector
    }


def document_view(document: KnowledgeDocument) -> dict[str, Any]:
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
