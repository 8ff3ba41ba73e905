"""/v1/feedback: rate one's own answer (1 or -1), optionally with a better answer: an answer
in one's conversations, or a chat completion of /v1/chat/completions that was stored (`store:
true`, or the setting `tuning.keep_feedback_text`); one per user and completion, given again
it replaces the earlier one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from inhouse.api.deps import app_state
from inhouse.api.guard import client_ip, guard, principal_of
from inhouse.auth.policy import Permission
from inhouse.conversations.feedback import FeedbackBook, Rating
from inhouse.conversations.service import DEFAULT_LIMIT, MAX_LIMIT

from .schemas import FeedbackBody, user_id_of

FLUSH_S = 2.0
router = APIRouter(prefix="/v1/feedback", dependencies=[guard(Permission.MODEL_USE)])


def _book(request: Request) -> FeedbackBook:
    state = app_state(request)
    return FeedbackBook(state.db, state.audit, keep_text=state.settings.tuning.keep_feedback_text)


@router.post("")
def give_feedback(body: FeedbackBody, request: Request) -> dict[str, Any]:
    principal = principal_of(request)
    rating = Rating(body.completion_id, body.rating, body.correction)
    # a completion is kept ~50 ms after its answer: one rated at once must be found
    app_state(request).pipeline.keeper.flush(FLUSH_S)
    view = _book(request).record(user_id_of(principal), principal.actor, rating, client_ip(request))
    return {key: view[key] for key in ("completion_id", "rating", "correction", "model")}


@router.get("")
def list_feedback(
    request: Request, limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
) -> dict[str, Any]:
    """The caller's own feedback, most recent first."""
    return {"data": _book(request).mine(user_id_of(principal_of(request)), limit)}
