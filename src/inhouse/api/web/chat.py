"""The chat page: / (a new chat) and /c/{id} (one of the user's conversations).

The page renders the choices its user has (the generative models they may use, the
collections they may read) and the welcome text; everything else, the conversations and their
messages, the browser fetches from the guarded /v1/conversations API."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from inhouse.api.deps import app_state
from inhouse.api.web.access import page_guard
from inhouse.api.web.render import page
from inhouse.auth.policy import Permission, Principal, allows, may_use_model
from inhouse.conversations.service import ConversationNotFound, Conversations
from inhouse.errors import ModelNotFound

router = APIRouter(include_in_schema=False)
GUARD = page_guard(Permission.MODEL_USE)


@router.get("/")
def new_chat_page(request: Request, principal: Principal = GUARD) -> HTMLResponse:
    """An empty chat; the first message sent creates the conversation."""
    return _chat(request, principal, "")


@router.get("/c/{conversation_id}")
def conversation_page(
    conversation_id: str, request: Request, principal: Principal = GUARD
) -> HTMLResponse:
    """One of the user's own conversations; anyone else's is a 404, as if it did not exist."""
    if not _owns(request, principal, conversation_id):
        message = "There is no such conversation among yours."
        return page(request, "error.html", "Not found", status_code=404, message=message)
    return _chat(request, principal, conversation_id)


def _chat(request: Request, principal: Principal, conversation_id: str) -> HTMLResponse:
    models = _models(request, principal)
    return page(
        request,
        "chat.html",
        "Chat",
        models=models,
        default_model=_default_model(request, models),
        collections=_collections(request, principal),
        conversation_id=conversation_id,
    )


def _owns(request: Request, principal: Principal, conversation_id: str) -> bool:
    """Whether the conversation is the user's (asked as the API asks it)."""
    if principal.user_id is None:  # the local operator with authentication off has none
        return False
    try:
        Conversations(app_state(request).db).get(principal.user_id, conversation_id)
    except ConversationNotFound:
        return False
    return True


def _models(request: Request, principal: Principal) -> list[str]:
    """The generative models and aliases the user may use (what /v1/models lists for them,
    less the embedding model, which cannot chat)."""
    names = app_state(request).resolver.names()
    return [name for name in names if may_use_model(principal, name)]


def _default_model(request: Request, models: list[str]) -> str:
    """The server's default model when the user may use it, else the first they may."""
    try:
        default = app_state(request).resolver.default().name
    except ModelNotFound:  # the default was removed from the store
        default = ""
    return default if default in models else (models[0] if models else "")


def _collections(request: Request, principal: Principal) -> list[str]:
    """The collections whose content the user may read: the ones an answer can ground on."""
    if not allows(principal, Permission.KNOWLEDGE_READ):
        return []
    return sorted(app_state(request).knowledge.readable(principal))
