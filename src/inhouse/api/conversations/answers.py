"""Answers in a conversation, streamed as server-sent events and stored as they end.

`POST /v1/conversations/{id}/messages` appends the user's message and answers it;
`POST /v1/conversations/{id}/regenerate` answers the last user message again, replacing the
answer it had. Both go through the one generation pipeline as a chat request (history: the
conversation's messages; grounded on its collections), so quotas, usage, audit and citations
are those of /v1/chat/completions. A refusal before the answer starts (quota, model, context)
is an ordinary JSON error; once it has started, events follow, one JSON object per `data:`:
`start` (completion_id, citations), `delta` (text) per piece, then `end` (finish_reason,
html, the stored message) or `error` (message, code), then `[DONE]`. The answer is stored
however it ends: finished, failed, or cut short by the client leaving (the stop button)."""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any, cast

import anyio
import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import Response

from inhouse.api.deps import app_state
from inhouse.api.generation.events import ChoiceEvent
from inhouse.api.generation.grounding import citations
from inhouse.api.generation.pipeline import Generation
from inhouse.api.generation.requests import ChatCompletionRequest, ChatMessage, KnowledgeOptions
from inhouse.api.generation.results import finish_reason
from inhouse.api.guard import caller_of, guard, principal_of
from inhouse.api.web.markdown import render_markdown
from inhouse.auth.policy import Permission
from inhouse.conversations.service import USER, Answer, Conversations, Thread, Turn
from inhouse.errors import InhouseError

from .schemas import NewMessage, user_id_of

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/conversations", dependencies=[guard(Permission.MODEL_USE)])
ENDPOINT = "web_chat"  # how usage rows and metrics name these generations
DONE = b"data: [DONE]\n\n"
Store = Callable[[Answer], dict[str, Any] | None]


@router.post("/{conversation_id}/messages", response_model=None)
async def send_message(conversation_id: str, body: NewMessage, request: Request) -> Response:
    """Append the user's message, then stream the answer to it."""
    book, user = _book(request), user_id_of(principal_of(request))
    thread = await anyio.to_thread.run_sync(book.thread, user, conversation_id)
    asked = Turn(0, USER, body.content)
    generation = await _start(request, thread, [*thread.turns, asked])
    try:
        await anyio.to_thread.run_sync(book.append, user, conversation_id, USER, body.content)
    except BaseException as exc:
        generation.ending.done(exc.status if isinstance(exc, InhouseError) else 500)
        raise

    def store(answer: Answer) -> dict[str, Any] | None:
        return book.store_answer(user, conversation_id, answer)

    return _respond(generation, thread, store)


@router.post("/{conversation_id}/regenerate", response_model=None)
async def regenerate(conversation_id: str, request: Request) -> Response:
    """Answer the last user message again; the new answer replaces the one it had."""
    book, user = _book(request), user_id_of(principal_of(request))
    thread = await anyio.to_thread.run_sync(book.thread, user, conversation_id)
    turns, replaced = thread.to_answer_again()
    generation = await _start(request, thread, turns)

    def store(answer: Answer) -> dict[str, Any] | None:
        return book.store_answer(user, conversation_id, answer, replaced)

    return _respond(generation, thread, store)


def _book(request: Request) -> Conversations:
    return Conversations(app_state(request).db)


async def _start(request: Request, thread: Thread, turns: Sequence[Turn]) -> Generation:
    """The chat request every front-end makes, admitted by the pipeline (or refused)."""
    grounding = KnowledgeOptions(collections=thread.collections) if thread.collections else None
    body = ChatCompletionRequest(
        model=thread.model,
        messages=[
            ChatMessage.model_validate({"role": t.role, "content": t.content}) for t in turns
        ],
        stream=True,
        knowledge=grounding,
    )
    return await app_state(request).pipeline.chat(caller_of(request), ENDPOINT, body)


def _respond(generation: Generation, thread: Thread, store: Store) -> Response:
    cited = citations(generation.prepared.passages) if thread.collections else None
    answer = AnswerStream(generation, "chatcmpl-" + uuid.uuid4().hex, cited, store)
    return generation.stream(answer.events(), "text/event-stream")


def event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


class AnswerStream:
    """One answer's events; whatever ends it, what was generated is stored exactly once."""

    def __init__(
        self,
        generation: Generation,
        completion_id: str,
        cited: list[dict[str, Any]] | None,
        store: Store,
    ) -> None:
        self.generation = generation
        self.completion_id = completion_id
        self.cited = cited
        self.store = store
        self.parts: list[str] = []
        self.reason = "stop"
        self.ended = "stopped"  # until the generation ends or fails: the client left
        self.stored = False

    async def events(self) -> AsyncGenerator[bytes, None]:
        status = 200
        try:
            start = {"completion_id": self.completion_id, "citations": self.cited or []}
            yield event({"type": "start", **start})
            async with contextlib.aclosing(self._pieces()) as pieces:
                async for piece in pieces:
                    yield event({"type": "delta", "text": piece})
            yield await self._end()
        except InhouseError as exc:
            status, self.ended = exc.status, "error"
            yield event({"type": "error", "error": {"message": exc.message, "code": exc.code}})
        except Exception:
            log.exception("a conversation's answer failed")
            status, self.ended = 500, "error"
            failed = {"message": "The server had an error generating the answer.", "code": None}
            yield event({"type": "error", "error": failed})
        finally:
            # the client left (stop), or it failed: keep the partial answer, even while
            # this task is being cancelled
            try:
                with anyio.CancelScope(shield=True):
                    await self._store()
            except Exception:
                status = 500  # logged by _store
            finally:
                self.generation.ending.done(status)
        yield DONE

    async def _pieces(self) -> AsyncGenerator[str, None]:
        """The answer's text as it comes (closing early aborts the generation)."""
        # an async generator, closed here at once rather than whenever it is collected
        choices = cast(AsyncGenerator[ChoiceEvent, None], self.generation.events())
        async with contextlib.aclosing(choices) as events:
            async for item in events:
                if item.event.text:
                    self.parts.append(item.event.text)
                    yield item.event.text
                self.reason = finish_reason(item.event) or self.reason  # raises on failure

    async def _end(self) -> bytes:
        self.ended = self.reason
        message = await self._store()
        if message is None:  # the conversation was deleted meanwhile
            return event({"type": "end", "finish_reason": self.reason, "html": "", "message": None})
        html = await anyio.to_thread.run_sync(render_markdown, message["content"])
        shown = {**message, "html": html}
        return event({"type": "end", "finish_reason": self.reason, "html": html, "message": shown})

    async def _store(self) -> dict[str, Any] | None:
        if self.stored:
            return None
        self.stored = True
        answer = Answer("".join(self.parts), self.completion_id, self.cited, self.ended)
        try:
            return await anyio.to_thread.run_sync(self.store, answer)
        except Exception:
            log.exception("an answer could not be stored")
            raise
