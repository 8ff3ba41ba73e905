"""/knowledge: collections, their documents and connectors, uploads and a search playground.

The page is a shell: its script reads and changes everything through /v1/knowledge, which
decides per caller what is readable. The upload and sync controls are drawn only for those
who may manage collections (the API refuses them to anyone else all the same)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from inhouse.api.web.access import page_guard
from inhouse.api.web.render import page
from inhouse.auth.policy import Permission, Principal, allows
from inhouse.knowledge.search import Mode
from inhouse.knowledge.service import MAX_TOP_K

router = APIRouter(include_in_schema=False)


@router.get("/knowledge", dependencies=[page_guard(Permission.KNOWLEDGE_READ)])
def knowledge_page(request: Request) -> Response:
    principal: Principal = request.state.principal
    return page(
        request,
        "knowledge.html",
        "Knowledge",
        manager=allows(principal, Permission.KNOWLEDGE_MANAGE),
        modes=[mode.value for mode in Mode],
        max_top_k=MAX_TOP_K,
    )
