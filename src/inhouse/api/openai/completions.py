"""POST /v1/completions (the legacy text completion API)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from inhouse.api.deps import app_state, require_api_key
from inhouse.api.metrics import RequestTracker
from inhouse.errors import InhouseError

from .results import (
    DONE,
    UsageCounter,
    collect,
    completion_logprobs,
    finish_reason,
    sse,
    tracked,
)
from .schemas import CompletionRequest
from .serving import Prepared

router = APIRouter(dependencies=[Depends(require_api_key)])


@router.post("/v1/completions", response_model=None)
async def create_completion(body: CompletionRequest, request: Request) -> Response:
    state = app_state(request)
    prepared = await state.serving.prepare_completion(body)
    tracker = state.metrics.track("completions")
    meta = {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": body.model,
        "system_fingerprint": state.fingerprint,
    }
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = _stream(prepared, tracker, meta, body, include_usage)
        return StreamingResponse(chunks, media_type="text/event-stream")
    try:
        result = await collect(tracked(prepared, tracker), prepared)
    except InhouseError as exc:
        tracker.done(exc.status)
        raise
    tracker.done(200)
    choices = []
    for i, c in enumerate(result.choices):
        prefix = _prompt_of(prepared, body, i) if body.echo else ""
        choices.append(
            {
                "index": i,
                "text": prefix + "".join(c.text),
                "logprobs": completion_logprobs(c.logprobs, 0)
                if body.logprobs is not None
                else None,
                "finish_reason": c.finish_reason,
            }
        )
    return JSONResponse({**meta, "choices": choices, "usage": result.usage(body.n)})


def _prompt_of(prepared: Prepared, body: CompletionRequest, index: int) -> str:
    return prepared.prompt_texts[index // body.n]


async def _stream(
    prepared: Prepared,
    tracker: RequestTracker,
    meta: dict[str, Any],
    body: CompletionRequest,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    base = {**meta, "usage": None} if include_usage else meta
    offsets = [0] * len(prepared.choices)

    def chunk(index: int, text: str, logprobs: Any = None, reason: str | None = None) -> bytes:
        choice = {"index": index, "text": text, "logprobs": logprobs, "finish_reason": reason}
        return sse({**base, "choices": [choice]})

    counter = UsageCounter(prepared, body.n)
    status = 200
    try:
        if body.echo:
            for i in range(len(prepared.choices)):
                yield chunk(i, _prompt_of(prepared, body, i))
        async for item in tracked(prepared, tracker):
            event = item.event
            counter.add(item)
            reason = finish_reason(event)
            logprobs = None
            if body.logprobs is not None and event.logprobs:
                logprobs = completion_logprobs(list(event.logprobs), offsets[item.index])
            offsets[item.index] += len(event.text)
            if event.text or logprobs or reason:
                yield chunk(item.index, event.text, logprobs, reason)
        if include_usage:
            yield sse({**base, "choices": [], "usage": counter.usage()})
    except InhouseError as exc:
        status = exc.status
        yield sse({"error": {"message": exc.message, "type": exc.type, "code": exc.code}})
    finally:
        tracker.done(status)
    yield DONE
