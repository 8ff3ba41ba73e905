"""What an outside site loads for a widget: the loader script, the frame page, its colours.

The loader (`/widget/{id}.js`) runs in the host page: it adds the chat bubble and, when
opened, an iframe of `/widget/{id}/frame`. The frame is served only into an allowed origin:
its Content-Security-Policy names the widget's origins in `frame-ancestors` (the browser
refuses any other embedder), and the server itself refuses a frame request that is not for
an iframe (`Sec-Fetch-Dest`) or whose Referer (the loader asks for `referrerpolicy=origin`)
is not an allowed origin. The page carries a frame ticket bound to that origin, without
which the chat route answers nothing."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from inhouse.api.deps import app_state
from inhouse.api.guard import guard
from inhouse.api.web.render import ENVIRONMENT
from inhouse.api.web.security import CSP
from inhouse.auth.policy import Permission
from inhouse.errors import NotFound
from inhouse.store.tables import Widget
from inhouse.widgets.branding import Look, look
from inhouse.widgets.origins import origin_of
from inhouse.widgets.service import public_widget
from inhouse.widgets.tickets import Tickets

LOADER = Path(__file__).parent / "static" / "widget-loader.js"
PUBLIC = [guard(Permission.PUBLIC)]
NO_STORE = {"cache-control": "no-store"}

router = APIRouter(include_in_schema=False)


def _widget(request: Request, public_id: str) -> Widget:
    with app_state(request).db.read() as session:
        widget = public_widget(session, public_id)
        session.expunge(widget)
        return widget


def _look(request: Request, widget: Widget) -> Look:
    return look(app_state(request).settings.branding, widget.branding)


@router.get("/widget/{public_id}.js", dependencies=PUBLIC)
def loader(public_id: str, request: Request) -> Response:
    """The script a site includes; its settings first, then the loader's code."""
    try:
        widget = _widget(request, public_id)
    except NotFound:
        return Response("/* no such widget */\n", 404, media_type="text/javascript")
    shown = _look(request, widget)
    config = {
        "id": widget.public_id,
        "title": shown.title,
        "colour": shown.primary_colour,
        "onColour": shown.on_primary,
    }
    # JSON is a JavaScript expression; "<" escaped so that no "</script>" can appear in it
    settings = json.dumps(config).replace("<", "\\u003c")
    code = f"(function (config) {{\n{LOADER.read_text()}\n}})({settings});\n"
    headers = {"cache-control": "no-cache", "cross-origin-resource-policy": "cross-origin"}
    return Response(code, media_type="text/javascript", headers=headers)


@router.get("/widget/{public_id}/frame", dependencies=PUBLIC)
def frame(public_id: str, request: Request) -> Response:
    """The chat inside the iframe, for an allowed embedding origin only."""
    try:
        widget = _widget(request, public_id)
    except NotFound:
        return _refused(404, "There is no such widget.")
    destination = request.headers.get("sec-fetch-dest")
    if destination is not None and destination != "iframe":
        return _refused(403, "This page is shown inside a site's chat widget only.")
    embedder = origin_of(request.headers.get("referer"))
    if embedder is None or embedder not in widget.origins:
        return _refused(403, "This chat widget is not enabled on this site.")
    shown = _look(request, widget)
    html = ENVIRONMENT.get_template("widget_frame.html").render(
        widget_id=widget.public_id,
        look=shown,
        ticket=Tickets(app_state(request).audit.key).issue(widget.public_id, embedder),
        parent_origin=embedder,
    )
    ancestors = " ".join(widget.origins)
    policy = CSP.replace("frame-ancestors 'none'", f"frame-ancestors {ancestors}")
    return HTMLResponse(html, headers={"content-security-policy": policy, **NO_STORE})


@router.get("/widget/{public_id}/style.css", dependencies=PUBLIC)
def style(public_id: str, request: Request) -> Response:
    """The widget's colours as CSS custom properties (checked hex colours only)."""
    try:
        shown = _look(request, _widget(request, public_id))
    except NotFound:
        return Response("", 404, media_type="text/css")
    css = (
        ":root {\n"
        f"  --brand: {shown.primary_colour};\n"
        f"  --on-brand: {shown.on_primary};\n"
        f"  --background: {shown.background_colour};\n"
        f"  --text: {shown.text_colour};\n"
        "}\n"
    )
    return Response(css, media_type="text/css", headers={"cache-control": "no-cache"})


def _refused(status: int, message: str) -> Response:
    """A plain refusal; it keeps the default policy (frame-ancestors 'none'), so no site
    can show it in a frame either."""
    return Response(message, status, media_type="text/plain", headers=NO_STORE)
