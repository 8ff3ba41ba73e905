"""POST /v1/chat/completions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from inhouse.api.deps import app_state
from inhouse.api.guard import guard
from inhouse.api.watch import RequestWatch
from inhouse.auth.policy import Permission

from .results import (
    EndingStream,
    UsageCounter,
    admit,
    chat_logprobs,
    client_gone,
    collect_tracked,
    finish_reason,
    guarded_sse,
    response_meta,
    sse,
    tracked,
)
from .schemas import ChatCompletionRequest
from .serving import Prepared
from .tools import ParsedCall, ToolCallParser, ToolPlan

router = APIRouter(dependencies=[guard(Permission.MODEL_USE)])


@router.post("/v1/chat/completions", response_model=None)
async def create_chat_completion(body: ChatCompletionRequest, request: Request) -> Response:
    state = app_state(request)
    state.governance.check_model(request, body.model)
    prepared = await state.serving.prepare_chat(body)
    end = await admit(request, "chat", body.model, prepared)
    meta = response_meta("chatcmpl", body.model, state.fingerprint)
    if body.stream:
        chunks = _stream(prepared, end, meta, body.include_usage())
        return EndingStream(guarded_sse(chunks, end), end, "text/event-stream")
    result = await collect_tracked(request, prepared, end)
    if result is None:
        return client_gone()
    choices = []
    for i, c in enumerate(result.choices):
        message = _message("".join(c.text), prepared.tools)
        choices.append(
            {
                "index": i,
                "message": message,
                "logprobs": chat_logprobs(c.logprobs) if body.logprobs else None,
                "finish_reason": "tool_calls" if "tool_calls" in message else c.finish_reason,
            }
        )
    payload = {**meta, "object": "chat.completion", "choices": choices}
    payload["usage"] = result.usage(body.n)
    return JSONResponse(payload)


def _message(text: str, plan: ToolPlan) -> dict[str, Any]:
    if not plan.active:
        return {"role": "assistant", "content": text}
    parser = ToolCallParser(plan)
    content, _ = parser.feed(text)
    rest, _ = parser.finish()
    message: dict[str, Any] = {"role": "assistant", "content": (content + rest) or None}
    if parser.calls:
        message["tool_calls"] = [call.wire() for call in parser.calls]
    return message


async def _stream(
    prepared: Prepared,
    tracker: RequestWatch,
    meta: dict[str, Any],
    include_usage: bool,
) -> AsyncIterator[bytes]:
    base = {**meta, "object": "chat.completion.chunk"}
    if include_usage:
        base["usage"] = None

    def chunk(index: int, delta: dict[str, Any], **extra: Any) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": None}
        return sse({**base, "choices": [{**choice, **extra}]})

    def tool_chunks(index: int, calls: list[ParsedCall], parser: ToolCallParser) -> list[bytes]:
        first = len(parser.calls) - len(calls)
        return [
            chunk(index, {"tool_calls": [call.wire(first + k)]}) for k, call in enumerate(calls)
        ]

    counter = UsageCounter(prepared, len(prepared.choices) // len(prepared.prompt_texts))
    parsers = [ToolCallParser(prepared.tools) for _ in prepared.choices]
    for i in range(len(prepared.choices)):
        yield chunk(i, {"role": "assistant", "content": ""})
    async for item in tracked(prepared, tracker):
        event, parser = item.event, parsers[item.index]
        counter.add(item)
        reason = finish_reason(event)
        text, calls = parser.feed(event.text) if prepared.tools.active else (event.text, [])
        if reason is not None and prepared.tools.active:
            rest, last = parser.finish()
            text, calls = text + rest, calls + last
        if text or event.logprobs:
            logprobs = chat_logprobs(list(event.logprobs)) if event.logprobs else None
            yield chunk(item.index, {"content": text}, logprobs=logprobs)
        for data in tool_chunks(item.index, calls, parser):
            yield data
        if reason is not None:
            reason = "tool_calls" if parser.calls else reason
            yield chunk(item.index, {}, finish_reason=reason)
    if include_usage:
        yield sse({**base, "choices": [], "usage": counter.usage()})
