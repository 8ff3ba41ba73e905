"""Wire schemas of /v1/conversations and /v1/feedback, and the shared checks of the caller."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt

from inhouse.api.deps import AppState
from inhouse.api.web.markdown import render_markdown
from inhouse.auth.policy import Principal
from inhouse.conversations.feedback import MAX_CORRECTION_CHARS
from inhouse.errors import InvalidRequest, NotFound
from inhouse.governance.caller import Caller

MAX_COLLECTIONS = 32  # what a grounded chat request accepts
ModelName = Annotated[str, Field(min_length=1, max_length=128)]
CollectionName = Annotated[str, Field(min_length=1, max_length=128)]
Title = Annotated[str, Field(max_length=200)]


def _distinct(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("the message is empty")
    return text


Collections = Annotated[
    list[CollectionName], Field(max_length=MAX_COLLECTIONS), AfterValidator(_distinct)
]


class NewConversation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: ModelName
    collections: Collections = Field(default_factory=list)
    title: Title = ""


class ConversationChange(BaseModel):
    """A PATCH: absent (or null) fields stay as they are."""

    model_config = ConfigDict(extra="forbid")

    title: Title | None = None
    model: ModelName | None = None
    collections: Collections | None = None


class NewMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: Annotated[str, AfterValidator(_not_blank)]


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    completion_id: str = Field(min_length=1, max_length=64)
    rating: Annotated[StrictInt, Field(description="1: good, -1: bad")]
    correction: str | None = Field(None, max_length=MAX_CORRECTION_CHARS)


def user_id_of(principal: Principal) -> int:
    """The caller's user id: conversations and feedback belong to users."""
    if principal.user_id is None:
        raise InvalidRequest(
            "conversations belong to users: enable authentication and sign in",
            code="user_required",
        )
    return principal.user_id


def check_choices(
    state: AppState, caller: Caller, model: str | None, collections: list[str] | None
) -> None:
    """Refuse a model the caller may not use or that does not exist, and a collection it may
    not read (told exactly as a missing one is). Blocking: call from a worker thread."""
    if model is not None:
        state.pipeline.check_model(caller, model)
        state.resolver.resolve(model)
    if collections:
        readable = state.knowledge.readable(caller.principal)
        for name in collections:
            if name not in readable:
                raise NotFound(f"no collection named {name!r}", param="collections")


def with_html(message: dict[str, Any]) -> dict[str, Any]:
    """A message as the API shows it: an answer's Markdown also as sanitized HTML (`html`);
    a user's message is plain text (`html` null: show `content` as text)."""
    html = render_markdown(message["content"]) if message["role"] == "assistant" else None
    return {**message, "html": html}
