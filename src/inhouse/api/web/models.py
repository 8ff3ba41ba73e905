"""/models: the models one may use, their aliases, which are loaded and their memory; for
model managers, aliases and imports from the server's import folder.

The script reads /v1/models, /api/tags and /api/ps (each filtered to what the caller may
use) and changes the store through /admin/models, which checks its own permission."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from inhouse.api.web.access import page_guard
from inhouse.api.web.render import page
from inhouse.auth.policy import Permission, Principal, allows

router = APIRouter(include_in_schema=False)


@router.get("/models", dependencies=[page_guard(Permission.MODEL_USE)])
def models_page(request: Request) -> Response:
    principal: Principal = request.state.principal
    return page(
        request, "models.html", "Models", manager=allows(principal, Permission.MODEL_MANAGE)
    )
