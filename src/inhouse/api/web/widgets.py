"""/manage/widgets: create, list and delete widgets, and copy a new widget's snippet. The page
calls /admin/widgets (guarded by directory.write) for everything it does."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from inhouse.api.web.access import page_guard
from inhouse.api.web.render import page
from inhouse.auth.policy import Permission

router = APIRouter(include_in_schema=False)


@router.get("/manage/widgets", dependencies=[page_guard(Permission.DIRECTORY_WRITE)])
def widgets_page(request: Request) -> Response:
    return page(request, "widgets.html", "Widgets")
