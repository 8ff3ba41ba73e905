"""POST /v1/chat/completions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from inhouse.api.deps import app_state
from inhouse.api.generation.grounding import citations
from inhouse.api.generation.keeping import KeepAs
from inhouse.api.generation.pipeline import Generation, client_gone
from inhouse.api.generation.requests import ChatCompletionRequest
from inhouse.api.generation.results import UsageCounter, finish_reason
from inhouse.api.generation.tools import ParsedCall, ToolCallParser, ToolPlan
from inhouse.api.guard import caller_of, guard
from inhouse.auth.policy import Permission

from .wire import chat_logprobs, guarded_sse, response_meta, sse

router = APIRouter(dependencies=[guard(Permission.MODEL_USE)])


@router.post("/v1/chat/completions", response_model=None)
async def create_chat_completion(body: ChatCompletionRequest, request: Request) -> Response:
    state = app_state(request)
    meta = response_meta("chatcmpl", body.model, state.fingerprint)
    keep = None
    if body.store or state.settings.tuning.keep_feedback_text:  # opted in: kept for feedback
        keep = KeepAs(meta["id"], meta["created"])
    generation = await state.pipeline.chat(caller_of(request), "chat", body, keep=keep)
    if body.stream:
        first = {"citations": citations(generation.prepared.passages)} if body.knowledge else {}
        chunks = _stream(generation, meta, body.include_usage(), first)
        return generation.stream(guarded_sse(chunks, generation.ending), "text/event-stream")
    result = await generation.collect(request)
    if result is None:
        return client_gone()
    tools = generation.prepared.tools
    choices = []
    for i, c in enumerate(result.choices):
        message = _message("".join(c.text), tools)
        choices.append(
            {
                "index": i,
                "message": message,
                "logprobs": chat_logprobs(c.logprobs) if body.logprobs else None,
                "finish_reason": "tool_calls" if "tool_calls" in message else c.finish_reason,
            }
        )
    payload = {**meta, "object": "chat.completion", "choices": choices}
    if body.knowledge is not None:
        payload["citations"] = citations(generation.prepared.passages)
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
    generation: Generation, meta: dict[str, Any], include_usage: bool, first: dict[str, Any]
) -> AsyncIterator[bytes]:
    """The chunks; `first` adds fields to the first one (the citations of a grounded answer)."""
    base = {**meta, "object": "chat.completion.chunk"}
    if include_usage:
        base["usage"] = None

    def chunk(
        index: int, delta: dict[str, Any], top: dict[str, Any] | None = None, **extra: Any
    ) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": None}
        return sse({**base, **(top or {}), "choices": [{**choice, **extra}]})

    def tool_chunks(index: int, calls: list[ParsedCall], parser: ToolCallParser) -> list[bytes]:
        first = len(parser.calls) - len(calls)
        return [
            chunk(index, {"tool_calls": [call.wire(first + k)]}) for k, call in enumerate(calls)
        ]

    prepared = generation.prepared
    counter = UsageCounter(prepared, len(prepared.choices) // len(prepared.prompt_texts))
    parsers = [ToolCallParser(prepared.tools) for _ in prepared.choices]
    for i in range(len(prepared.choices)):
        yield chunk(i, {"role": "assistant", "content": ""}, first if i == 0 else None)
    async for item in generation.events():
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
