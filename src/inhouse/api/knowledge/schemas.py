"""Wire schemas of /v1/knowledge: request bodies, and the JSON the routes answer with."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from inhouse.knowledge.search import Hit, Mode
from inhouse.knowledge.service import MAX_TOP_K

MAX_QUERY_CHARS = 4096
# where a connector reads from: for those who manage it; readers see how its syncs went
CONNECTOR_SOURCE = frozenset(
    {"kind", "url", "query", "tables", "id_column", "updated_column", "allow_writable"}
)


class NewCollection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    group: str = Field(min_length=1, max_length=64, description="Owner group: may read it.")


class SearchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    collections: list[str] | None = Field(default=None, max_length=100)
    top_k: int = Field(default=5, ge=1, le=MAX_TOP_K)
    mode: Mode = Mode.HYBRID


def collection_view(summary: dict[str, Any], manager: bool) -> dict[str, Any]:
    return {"object": "knowledge.collection", **_sync_shown(summary, manager)}


def sync_view(status: dict[str, Any], manager: bool) -> dict[str, Any]:
    return {"object": "knowledge.sync", **_sync_shown(status, manager)}


def _sync_shown(view: dict[str, Any], manager: bool) -> dict[str, Any]:
    """`view` with its connector's source left out unless the caller manages collections."""
    sync = view.get("sync")
    if manager or not sync:
        return view
    return view | {"sync": {k: v for k, v in sync.items() if k not in CONNECTOR_SOURCE}}


def document_view(collection: str, document: dict[str, Any], reader: bool = True) -> dict[str, Any]:
    """A document's row; its title (taken from its text) only for those who may read it."""
    shown = document if reader else document | {"title": None}
    return {"object": "knowledge.document", "collection": collection, **shown}


def hit_view(hit: Hit) -> dict[str, Any]:
    """One passage, shaped as chat's citations are (the snippet is the whole passage)."""
    return {
        "object": "knowledge.hit",
        "collection": hit.collection,
        "document": hit.document_id,
        "source": hit.source,
        "title": hit.title,
        "location": hit.location,
        "snippet": hit.text,
        "score": round(hit.score, 6),
    }


def listing(data: list[dict[str, Any]]) -> dict[str, Any]:
    return {"object": "list", "data": data}


def deleted(kind: str, ident: str | int) -> dict[str, Any]:
    return {"id": ident, "object": f"knowledge.{kind}", "deleted": True}
