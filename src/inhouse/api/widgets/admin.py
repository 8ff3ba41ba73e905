"""/admin/widgets: create (token and snippet shown once), list, show, change, delete."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from html import escape
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from inhouse.api.deps import app_state
from inhouse.api.guard import client_ip, guard, principal_of
from inhouse.auth.limits import limits_of
from inhouse.auth.policy import Permission
from inhouse.errors import InvalidRequest
from inhouse.store.tables import Widget
from inhouse.widgets.service import Widgets, WidgetSpec

router = APIRouter(prefix="/admin/widgets")
READ = [guard(Permission.DIRECTORY_READ)]  # auditors see widgets (never a token)
WRITE = [guard(Permission.DIRECTORY_WRITE)]


class Branding(BaseModel):
    """Overrides of the server's branding; absent or null: the server's setting."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, max_length=80)
    welcome_text: str | None = Field(default=None, max_length=500)
    primary_colour: str | None = Field(default=None, max_length=7)
    background_colour: str | None = Field(default=None, max_length=7)
    text_colour: str | None = Field(default=None, max_length=7)


class NewWidget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    model: str = Field(min_length=1, max_length=128)
    origins: list[str] = Field(min_length=1, max_length=32)
    collections: list[str] = Field(default_factory=list, max_length=32)
    requests_per_minute: int = Field(ge=1, le=100_000)
    tokens_per_day: int | None = Field(default=None, ge=0)
    branding: Branding = Field(default_factory=Branding)


class WidgetChange(BaseModel):
    """A PATCH: absent fields stay as they are."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=128)
    model: str | None = Field(default=None, min_length=1, max_length=128)
    origins: list[str] | None = Field(default=None, min_length=1, max_length=32)
    collections: list[str] | None = Field(default=None, max_length=32)
    requests_per_minute: int | None = Field(default=None, ge=1, le=100_000)
    tokens_per_day: int | None = Field(default=None, ge=0)
    branding: Branding | None = None
    disabled: bool | None = None


@contextmanager
def widgets_for(request: Request, *, write: bool) -> Iterator[Widgets]:
    """One transaction acting as the request's principal (its changes audited in it)."""
    state = app_state(request)
    with state.db.write() if write else state.db.read() as session:
        yield Widgets(session, state.audit, principal_of(request).actor, client_ip(request))


@router.post("", status_code=201, dependencies=WRITE)
def create_widget(body: NewWidget, request: Request) -> dict[str, Any]:
    """A new widget; its token (and the snippet holding it) are in this response only."""
    owner = principal_of(request)
    if owner.user_id is None:
        raise InvalidRequest("a widget needs an owner: turn authentication on to create one")
    _known_model(request, body.model)
    _readable(request, body.collections)
    spec = WidgetSpec(
        name=body.name,
        model=body.model,
        origins=body.origins,
        requests_per_minute=body.requests_per_minute,
        tokens_per_day=body.tokens_per_day,
        collections=body.collections,
        branding=body.branding.model_dump(),
    )
    with widgets_for(request, write=True) as widgets:
        widget, token = widgets.create(owner.user_name, spec)
        view = widget_view(widgets, widget)
    return {**view, "token": token, "snippet": snippet(request, widget.public_id, token)}


@router.get("", dependencies=READ)
def list_widgets(request: Request) -> dict[str, Any]:
    with widgets_for(request, write=False) as widgets:
        return {"widgets": [widget_view(widgets, w) for w in widgets.all()]}


@router.get("/{public_id}", dependencies=READ)
def get_widget(public_id: str, request: Request) -> dict[str, Any]:
    with widgets_for(request, write=False) as widgets:
        return widget_view(widgets, widgets.get(public_id))


@router.patch("/{public_id}", dependencies=WRITE)
def change_widget(public_id: str, body: WidgetChange, request: Request) -> dict[str, Any]:
    changes = body.model_dump(include=body.model_fields_set)
    if body.model is not None:
        _known_model(request, body.model)
    if body.collections is not None:
        _readable(request, body.collections)
    if body.branding is not None:
        changes["branding"] = body.branding.model_dump()
    for field in ("name", "model", "origins", "collections", "disabled", "requests_per_minute"):
        if field in changes and changes[field] is None:
            raise InvalidRequest(f"{field} cannot be null", param=field)
    with widgets_for(request, write=True) as widgets:
        return widget_view(widgets, widgets.update(public_id, **changes))


@router.delete("/{public_id}", dependencies=WRITE)
def delete_widget(public_id: str, request: Request) -> dict[str, Any]:
    """Delete now: its token fails from the next request on; its key is revoked."""
    with widgets_for(request, write=True) as widgets:
        widgets.delete(public_id)
    return {"id": public_id, "deleted": True}


def widget_view(widgets: Widgets, widget: Widget) -> dict[str, Any]:
    """A widget as JSON: never its token or its hash."""
    key = widgets.key_of(widget)
    limits = limits_of(key)
    return {
        "id": widget.public_id,
        "name": widget.name,
        "model": widget.model,
        "collections": widget.collections,
        "origins": widget.origins,
        "requests_per_minute": limits["requests_per_minute"],
        "tokens_per_day": limits["tokens_per_day"],
        "branding": widget.branding,
        "key": key.public_id,
        "created_by": widget.created_by,
        "created_at": widget.created_at,
        "disabled": widget.disabled,
        "revoked": key.revoked_at is not None,
    }


def snippet(request: Request, public_id: str, token: str) -> str:
    """The HTML a site adds to show the widget."""
    base = str(request.base_url).rstrip("/")
    src = escape(f"{base}/widget/{public_id}.js")
    return f'<script src="{src}" data-token="{escape(token)}" defer></script>'


def _known_model(request: Request, model: str) -> None:
    if model not in app_state(request).resolver.names():
        raise InvalidRequest(f"no model or alias named {model!r}", param="model")


def _readable(request: Request, collections: list[str]) -> None:
    """A widget grounds only on collections its creator may read (a collection the creator
    may not read is refused exactly as one that does not exist)."""
    readable = app_state(request).knowledge.readable(principal_of(request))
    for name in sorted(set(collections)):
        if name not in readable:
            raise InvalidRequest(f"no collection named {name!r}", param="collections")
