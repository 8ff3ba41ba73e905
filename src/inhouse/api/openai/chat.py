"""POST /v1/chat/completions."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from inhouse.api.deps import AppState, app_state, require_api_key
from inhouse.api.metrics import RequestTracker
from inhouse.errors import InhouseError

from .results import (
    DONE,
    UsageCounter,
    chat_logprobs,
    collect,
    finish_reason,
    sse,
)
from .schemas import ChatCompletionRequest
from .serving import ChoiceEvent, Prepared

router = APIRouter(dependencies=[Depends(require_api_key)])


@router.post("/v1/chat/completions", response_model=None)
async def create_chat_completion(body: ChatCompletionRequest, request: Request) -> Response:
    state = app_state(request)
    prepared = state.serving.prepare_chat(body)
    state.engine.check_capacity(len(prepared.choices))
    tracker = state.metrics.track("chat")
    meta = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "created": int(time.time()),
        "model": body.model,
        "system_fingerprint": state.fingerprint,
    }
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = _stream(state, prepared, tracker, meta, include_usage)
        return StreamingResponse(chunks, media_type="text/event-stream")
    try:
        result = await collect(_tracked(state, prepared, tracker), prepared)
    except InhouseError as exc:
        tracker.done(exc.status)
        raise
    tracker.done(200)
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": "".join(c.text)},
            "logprobs": chat_logprobs(c.logprobs) if body.logprobs else None,
            "finish_reason": c.finish_reason,
        }
        for i, c in enumerate(result.choices)
    ]
    payload = {**meta, "object": "chat.completion", "choices": choices}
    payload["usage"] = result.usage(body.n)
    return JSONResponse(payload)


async def _tracked(
    state: AppState, prepared: Prepared, tracker: RequestTracker
) -> AsyncIterator[ChoiceEvent]:
    async for item in state.serving.run(prepared.choices):
        tracker.on_event(item.event)
        yield item


async def _stream(
    state: AppState,
    prepared: Prepared,
    tracker: RequestTracker,
    meta: dict[str, Any],
    include_usage: bool,
) -> AsyncIterator[bytes]:
    base = {**meta, "object": "chat.completion.chunk"}
    if include_usage:
        base["usage"] = None

    def chunk(index: int, delta: dict[str, Any], **extra: Any) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": None}
        return sse({**base, "choices": [{**choice, **extra}]})

    counter = UsageCounter(prepared, len(prepared.choices) // len(prepared.prompt_texts))
    status = 200
    try:
        for i in range(len(prepared.choices)):
            yield chunk(i, {"role": "assistant", "content": ""})
        async for item in _tracked(state, prepared, tracker):
            event = item.event
            counter.add(item)
            reason = finish_reason(event)
            if event.text or event.logprobs:
                logprobs = chat_logprobs(list(event.logprobs)) if event.logprobs else None
                yield chunk(item.index, {"content": event.text}, logprobs=logprobs)
            if reason is not None:
                yield chunk(item.index, {}, finish_reason=reason)
        if include_usage:
            yield sse({**base, "choices": [], "usage": counter.usage()})
    except InhouseError as exc:
        status = exc.status
        yield sse({"error": {"message": exc.message, "type": exc.type, "code": exc.code}})
    finally:
        tracker.done(status)
    yield DONE
