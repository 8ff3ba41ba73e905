"""POST /v1/completions (the legacy text completion API)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from inhouse.api.deps import app_state
from inhouse.api.generation.pipeline import Generation, client_gone
from inhouse.api.generation.prepare import Prepared
from inhouse.api.generation.requests import CompletionRequest
from inhouse.api.generation.results import UsageCounter, finish_reason
from inhouse.api.guard import caller_of, guard
from inhouse.auth.policy import Permission

from .wire import completion_logprobs, guarded_sse, response_meta, sse

router = APIRouter(dependencies=[guard(Permission.MODEL_USE)])


@router.post("/v1/completions", response_model=None)
async def create_completion(body: CompletionRequest, request: Request) -> Response:
    state = app_state(request)
    generation = await state.pipeline.completion(caller_of(request), "completions", body)
    prepared = generation.prepared
    meta = {**response_meta("cmpl", body.model, state.fingerprint), "object": "text_completion"}
    if body.stream:
        chunks = _stream(generation, meta, body)
        return generation.stream(guarded_sse(chunks, generation.ending), "text/event-stream")
    result = await generation.collect(request)
    if result is None:
        return client_gone()
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
    generation: Generation, meta: dict[str, Any], body: CompletionRequest
) -> AsyncIterator[bytes]:
    prepared = generation.prepared
    include_usage = body.include_usage()
    base = {**meta, "usage": None} if include_usage else meta
    offsets = [0] * len(prepared.choices)

    def chunk(index: int, text: str, logprobs: Any = None, reason: str | None = None) -> bytes:
        choice = {"index": index, "text": text, "logprobs": logprobs, "finish_reason": reason}
        return sse({**base, "choices": [choice]})

    counter = UsageCounter(prepared, body.n)
    if body.echo:
        for i in range(len(prepared.choices)):
            yield chunk(i, _prompt_of(prepared, body, i))
    async for item in generation.events():
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
