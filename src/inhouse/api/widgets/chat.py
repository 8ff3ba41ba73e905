"""POST /widget/{id}/chat: the one thing a widget token can do.

A request is answered only when it carries the widget's token (Authorization: Bearer) and a
frame ticket (X-Widget-Ticket) issued, for an origin the widget still allows, by the widget's
frame page; an Origin header, when a browser sends one, must be that frame's (this server) or
an allowed origin. The caller sends only the conversation: the model, the collections, the
answer's length and everything else are the widget's. The answer streams as server-sent
events through the one generation pipeline: {"citations"} (grounded widgets), {"delta"}...,
{"finish_reason"}, then [DONE]; a failure mid-answer is an {"error"} event."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from inhouse.api.deps import app_state
from inhouse.api.generation.grounding import citations
from inhouse.api.generation.pipeline import Generation
from inhouse.api.generation.requests import ChatCompletionRequest, ChatMessage, KnowledgeOptions
from inhouse.api.generation.results import finish_reason
from inhouse.api.guard import client_ip, guard
from inhouse.auth.policy import Permission
from inhouse.errors import Forbidden, InhouseError, InvalidRequest
from inhouse.governance.caller import Caller
from inhouse.widgets.origins import origin_of
from inhouse.widgets.service import WidgetAccess, public_widget, widget_access
from inhouse.widgets.tickets import Tickets

router = APIRouter()
TICKET_HEADER = "x-widget-ticket"
MAX_ANSWER_TOKENS = 512
MAX_TURNS = 40
NOT_HERE = "this widget may not be used from this site"


class Turn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    content: str = Field(min_length=1, max_length=4000)


class WidgetChat(BaseModel):
    """All a widget's caller may send: the conversation, no system prompt, model or tools."""

    model_config = ConfigDict(extra="forbid")

    messages: list[Turn] = Field(min_length=1, max_length=MAX_TURNS)


@router.post("/widget/{public_id}/chat", dependencies=[guard(Permission.PUBLIC)])
async def widget_chat(public_id: str, request: Request) -> Response:
    access = await checked_access(request, public_id)
    body = await _conversation(request)
    widget = access.widget
    knowledge = KnowledgeOptions(collections=widget.collections) if widget.collections else None
    chat = ChatCompletionRequest(
        model=widget.model,
        messages=[ChatMessage(role=t.role, content=t.content) for t in body.messages],
        max_tokens=MAX_ANSWER_TOKENS,
        stream=True,
        knowledge=knowledge,
    )
    caller = Caller(access.principal, client_ip(request))
    generation = await app_state(request).pipeline.chat(caller, "widget", chat)
    events = _events(generation, knowledge is not None)
    return generation.stream(_guarded(events, generation), "text/event-stream")


async def checked_access(request: Request, public_id: str) -> WidgetAccess:
    """The widget's access for this request, or the refusal: token, ticket, origins."""
    state = app_state(request)
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else ""

    def check() -> WidgetAccess:
        with state.db.read() as session:
            _check_origin(request, public_widget(session, public_id).origins)
            return widget_access(session, public_id, token, time.time())

    access = check() if state.credentials.inline else await anyio.to_thread.run_sync(check)
    embedder = Tickets(state.audit.key).check(request.headers.get(TICKET_HEADER, ""), public_id)
    if embedder not in access.widget.origins:  # the origin was removed since the ticket
        raise Forbidden(NOT_HERE, code="origin_not_allowed")
    return access


def _check_origin(request: Request, allowed: list[str]) -> None:
    """A browser's Origin, when sent, must be the frame's (this server) or an allowed site."""
    sent = request.headers.get("origin")
    if sent is not None and not (_is_self(request, sent) or origin_of(sent) in allowed):
        raise Forbidden(NOT_HERE, code="origin_not_allowed")


def _is_self(request: Request, origin: str) -> bool:
    """Whether `origin` is this server's own (the widget's frame calling home)."""
    host = request.headers.get("host", "").lower()
    parsed = origin_of(origin)
    return bool(host) and parsed is not None and parsed.split("://", 1)[1] == host


async def _conversation(request: Request) -> WidgetChat:
    try:
        return WidgetChat.model_validate_json(await request.body())
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error.get("loc", ()))
        raise InvalidRequest(f"Invalid value for {where or 'body'}: {error['msg']}") from None


async def _events(generation: Generation, grounded: bool) -> AsyncIterator[bytes]:
    if grounded:
        # a visitor sees where an answer comes from, never the server's paths or locations
        shown = ("index", "collection", "title", "snippet")
        cited = [
            {k: c[k] for k in shown if k in c} for c in citations(generation.prepared.passages)
        ]
        yield _sse({"citations": cited})
    async for item in generation.events():
        reason = finish_reason(item.event)
        if item.event.text:
            yield _sse({"delta": item.event.text})
        if reason is not None:
            yield _sse({"finish_reason": reason})


async def _guarded(chunks: AsyncIterator[bytes], generation: Generation) -> AsyncGenerator[bytes]:
    """A failure mid-answer becomes an error event; the stream always ends in [DONE]."""
    status = 200
    try:
        async for data in chunks:
            yield data
    except InhouseError as exc:
        status = exc.status
        yield _sse({"error": {"message": exc.message, "type": exc.type, "code": exc.code}})
    except Exception:
        status = 500
        raise
    finally:
        generation.ending.done(status)
    yield b"data: [DONE]\n\n"


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"
