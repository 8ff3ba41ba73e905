"""/v1/knowledge: collections, their documents (upload, list, delete), search, sync status.

The rules are the CLI's, per caller: members read (search, list, show) only the collections
their groups are granted, and one they may not read answers exactly as a missing one does
(404 by name, absent from lists, no hits); admins manage every collection (create, delete,
upload, remove documents, see sizes and document lists) but read content only where a group
of theirs is granted it (or `knowledge.admins_read_all`).
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request

from inhouse.api.deps import app_state
from inhouse.api.guard import client_ip, guard, principal_of
from inhouse.api.knowledge.form import FORM_OVERHEAD, receive_file
from inhouse.api.knowledge.schemas import (
    NewCollection,
    SearchBody,
    collection_view,
    deleted,
    document_view,
    hit_view,
    listing,
    sync_view,
)
from inhouse.auth.policy import Permission, allows
from inhouse.errors import NotFound, PayloadTooLarge
from inhouse.knowledge.service import KnowledgeService

router = APIRouter(prefix="/v1/knowledge")
READ = [guard(Permission.KNOWLEDGE_READ)]
MANAGE = [guard(Permission.KNOWLEDGE_MANAGE)]


def _service(request: Request) -> KnowledgeService:
    return app_state(request).knowledge


def _manages(request: Request) -> bool:
    return allows(principal_of(request), Permission.KNOWLEDGE_MANAGE)


def _visible(request: Request, name: str) -> KnowledgeService:
    """The service, once the caller may see the collection: a reader of it, or a manager.
    Anyone else is told, in the same words, what they would be told if it did not exist."""
    service = _service(request)
    if not _manages(request) and name not in service.readable(principal_of(request)):
        raise NotFound(f"no collection named {name!r}")
    return service


@router.get("/collections", dependencies=READ)
def list_collections(request: Request) -> dict[str, Any]:
    service, manager = _service(request), _manages(request)
    rows = service.collections()
    if not manager:
        readable = service.readable(principal_of(request))
        rows = [row for row in rows if row["name"] in readable]
    return listing([collection_view(row, manager) for row in rows])


@router.post("/collections", status_code=201, dependencies=MANAGE)
def create_collection(body: NewCollection, request: Request) -> dict[str, Any]:
    service = _service(request)
    actor = principal_of(request).actor
    service.create(actor, body.name, body.group, client_ip(request))
    return collection_view(service.show(body.name), manager=True)


@router.get("/collections/{name}", dependencies=READ)
def get_collection(name: str, request: Request) -> dict[str, Any]:
    return collection_view(_visible(request, name).show(name), _manages(request))


@router.delete("/collections/{name}", dependencies=MANAGE)
def delete_collection(name: str, request: Request) -> dict[str, Any]:
    _service(request).remove(principal_of(request).actor, name, client_ip(request))
    return deleted("collection", name)


@router.get("/collections/{name}/documents", dependencies=READ)
def list_documents(name: str, request: Request) -> dict[str, Any]:
    service = _visible(request, name)
    reader = name in service.readable(principal_of(request))
    return listing([document_view(name, d, reader) for d in service.documents(name)])


@router.post("/collections/{name}/documents", dependencies=MANAGE)
async def upload_document(name: str, request: Request) -> dict[str, Any]:
    """Stream the form's file to disk within knowledge.max_file_mb, then index it. A file
    that cannot be parsed is still a 200: the document is recorded as failed, with why."""
    service = _service(request)
    length = request.headers.get("content-length", "")
    received = await anyio.to_thread.run_sync(service.receive, name)
    try:
        if length.isdigit() and int(length) > received.limit + FORM_OVERHEAD:
            raise PayloadTooLarge(f"the file is larger than {received.limit} bytes")
        content_type = request.headers.get("content-type", "")
        filename = await receive_file(request.stream(), content_type, received)
    except BaseException:
        await anyio.to_thread.run_sync(received.discard)
        raise
    actor, ip = principal_of(request).actor, client_ip(request)
    document = await anyio.to_thread.run_sync(service.upload, actor, name, filename, received, ip)
    return document_view(name, document)


@router.delete("/collections/{name}/documents/{document_id}", dependencies=MANAGE)
def delete_document(name: str, document_id: int, request: Request) -> dict[str, Any]:
    service = _service(request)
    service.remove_document(principal_of(request).actor, name, str(document_id), client_ip(request))
    return deleted("document", document_id)


@router.get("/collections/{name}/sync", dependencies=READ)
def sync_status(name: str, request: Request) -> dict[str, Any]:
    """Sizes, last change and (under "sync") the connector's last run, error and next run."""
    return sync_view(_visible(request, name).sync_status(name), _manages(request))


@router.post("/collections/{name}/sync", dependencies=MANAGE)
async def run_sync(name: str, request: Request) -> dict[str, Any]:
    """Sync the collection from its connector now; a failing source is reported in the
    status (status "failed", last_error), not as an HTTP error."""
    service, actor = _service(request), principal_of(request).actor
    await anyio.to_thread.run_sync(service.sync, actor, name)
    status = await anyio.to_thread.run_sync(service.sync_status, name)
    return sync_view(status, manager=True)


@router.post("/search", dependencies=READ)
def search(body: SearchBody, request: Request) -> dict[str, Any]:
    """The passages the caller may read that best answer the query; what it may not read is
    never retrieved, counted or ranked (the condition is inside the SQL)."""
    principal = principal_of(request)
    hits = _service(request).search(
        principal, body.query, body.collections, body.top_k, body.mode, ip=client_ip(request)
    )
    return listing([hit_view(hit) for hit in hits])
