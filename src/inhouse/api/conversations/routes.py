"""Conversations: list and search, create, read with messages, change, delete. Another
user's conversation is answered exactly as a missing one (404 conversation_not_found)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response

from inhouse.api.deps import app_state
from inhouse.api.guard import caller_of, guard, principal_of
from inhouse.auth.policy import Permission
from inhouse.conversations.service import DEFAULT_LIMIT, MAX_LIMIT, Changes, Conversations

from .schemas import ConversationChange, NewConversation, check_choices, user_id_of, with_html

router = APIRouter(prefix="/v1/conversations", dependencies=[guard(Permission.MODEL_USE)])


def _book(request: Request) -> Conversations:
    return Conversations(app_state(request).db)


@router.get("")
def list_conversations(
    request: Request,
    q: str = Query("", max_length=200),
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
) -> dict[str, Any]:
    """The caller's conversations, most recently active first; `q` searches titles and
    message text (case-insensitive)."""
    user = user_id_of(principal_of(request))
    return {"data": _book(request).search(user, q, limit)}


@router.post("", status_code=201)
def create_conversation(body: NewConversation, request: Request) -> dict[str, Any]:
    user = user_id_of(principal_of(request))
    check_choices(app_state(request), caller_of(request), body.model, body.collections)
    return _book(request).create(user, body.model, body.collections, body.title)


@router.get("/{conversation_id}")
def get_conversation(conversation_id: str, request: Request) -> dict[str, Any]:
    user = user_id_of(principal_of(request))
    conversation = _book(request).get(user, conversation_id)
    conversation["messages"] = [with_html(m) for m in conversation["messages"]]
    return conversation


@router.patch("/{conversation_id}")
def change_conversation(
    conversation_id: str, body: ConversationChange, request: Request
) -> dict[str, Any]:
    user = user_id_of(principal_of(request))
    book = _book(request)
    book.get(user, conversation_id)  # a stranger's conversation: 404 before any other check
    check_choices(app_state(request), caller_of(request), body.model, body.collections)
    return book.change(user, conversation_id, Changes(body.title, body.model, body.collections))


@router.delete("/{conversation_id}", status_code=204)
def delete_conversation(conversation_id: str, request: Request) -> Response:
    _book(request).delete(user_id_of(principal_of(request)), conversation_id)
    return Response(status_code=204)
