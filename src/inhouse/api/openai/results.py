"""Collect the events of a request's choices into final results, and frame SSE chunks."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from inhouse.api.deps import app_state
from inhouse.api.watch import Ending, RequestWatch, unless_disconnected
from inhouse.engine.request import FinishReason, TokenEvent, TokenLogprob
from inhouse.errors import InhouseError

from .serving import ChoiceEvent, Prepared, Serving, released_on_error

DONE = b"data: [DONE]\n\n"
CLIENT_CLOSED_REQUEST = 499


class GenerationFailed(InhouseError):
    status = 500
    type = "server_error"
    code = "generation_failed"


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


def finish_reason(event: TokenEvent) -> str | None:
    """The wire value; an engine error becomes an exception the caller reports."""
    reason = event.finish_reason
    if reason is None:
        return None
    if reason is FinishReason.ERROR:
        raise GenerationFailed(event.error or "generation failed")
    return "length" if reason is FinishReason.LENGTH else "stop"


@dataclass
class ChoiceResult:
    text: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    completion_tokens: int = 0
    cached_tokens: int = 0


@dataclass
class Collected:
    choices: list[ChoiceResult]
    prompt_tokens: int

    def usage(self, n_per_prompt: int) -> dict[str, Any]:
        completion = sum(c.completion_tokens for c in self.choices)
        cached = sum(c.cached_tokens for c in self.choices[::n_per_prompt])
        return usage_dict(self.prompt_tokens, completion, cached)


def usage_dict(prompt: int, completion: int, cached: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


class UsageCounter:
    """Running totals of a streamed request, for the final usage chunk."""

    def __init__(self, prepared: Prepared, n_per_prompt: int) -> None:
        self.collected = Collected(
            [ChoiceResult() for _ in prepared.choices], prepared.prompt_tokens
        )
        self.n_per_prompt = n_per_prompt

    def add(self, item: ChoiceEvent) -> None:
        if item.event.finish_reason is not None:
            choice = self.collected.choices[item.index]
            choice.completion_tokens = item.event.completion_tokens
            choice.cached_tokens = item.event.cached_tokens

    def usage(self) -> dict[str, Any]:
        return self.collected.usage(self.n_per_prompt)


async def collect(events: AsyncIterator[ChoiceEvent], prepared: Prepared) -> Collected:
    collected = Collected([ChoiceResult() for _ in prepared.choices], prepared.prompt_tokens)
    async for item in events:
        choice = collected.choices[item.index]
        event = item.event
        choice.text.append(event.text)
        choice.logprobs.extend(event.logprobs)
        if event.finish_reason is not None:
            choice.finish_reason = finish_reason(event)
            choice.completion_tokens = event.completion_tokens
            choice.cached_tokens = event.cached_tokens
    return collected


def chat_logprobs(logprobs: list[TokenLogprob]) -> dict[str, Any]:
    return {
        "content": [
            {
                "token": lp.token,
                "logprob": lp.logprob,
                "bytes": list(lp.token_bytes),
                "top_logprobs": [
                    {"token": t.token, "logprob": t.logprob, "bytes": list(t.token_bytes)}
                    for t in lp.top
                ],
            }
            for lp in logprobs
        ]
    }


def completion_logprobs(logprobs: list[TokenLogprob], offset: int) -> dict[str, Any]:
    offsets: list[int] = []
    for lp in logprobs:
        offsets.append(offset)
        offset += len(lp.token)
    return {
        "tokens": [lp.token for lp in logprobs],
        "token_logprobs": [lp.logprob for lp in logprobs],
        "top_logprobs": [{t.token: t.logprob for t in lp.top} for lp in logprobs],
        "text_offset": offsets,
    }


async def tracked(prepared: Prepared, tracker: RequestWatch) -> AsyncIterator[ChoiceEvent]:
    """The choices' events, timed into the metrics as they pass."""
    async for item in Serving.run(prepared):
        tracker.on_event(item.event)
        yield item


def response_meta(id_prefix: str, model: str, fingerprint: str) -> dict[str, Any]:
    return {
        "id": f"{id_prefix}-{uuid.uuid4().hex}",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": fingerprint,
    }


async def admit(request: Request, endpoint: str, model: str, prepared: Prepared) -> Ending:
    """Admit a prepared generation (quotas); its lease is released if it is refused. The
    returned Ending must be reached however the request ends (the helpers below do)."""
    state = app_state(request)
    with released_on_error(prepared.lease):
        watch = await state.governance.admit_generation(
            request, endpoint, model, prepared, state.metrics.track(endpoint)
        )
    return Ending(watch, prepared.lease)


async def collect_ended(
    request: Request, events: AsyncIterator[ChoiceEvent], prepared: Prepared, end: Ending
) -> Collected | None:
    """Every choice's whole output (non-streaming), then the request's end. None when the
    client went away first: every choice is aborted and the usage says so."""
    status = 200
    try:
        return await unless_disconnected(request, collect(events, prepared))
    except InhouseError as exc:
        status = exc.status
        raise
    except Exception:
        status = 500
        raise
    finally:
        end.done(status)


async def collect_tracked(request: Request, prepared: Prepared, end: Ending) -> Collected | None:
    """`collect_ended` over the choices' events, timed into the metrics."""
    return await collect_ended(request, tracked(prepared, end), prepared, end)


def client_gone() -> Response:
    """What a request whose client has gone returns; nobody reads it (nginx's code)."""
    return Response(status_code=CLIENT_CLOSED_REQUEST)


class EndingStream(StreamingResponse):
    """A streamed answer that ends its request however the stream ends: finished, failed,
    client gone mid-stream, or gone before the first chunk (when the chunks never start)."""

    def __init__(self, chunks: AsyncGenerator[bytes, None], end: Ending, media_type: str) -> None:
        super().__init__(chunks, media_type=media_type)
        self.chunks = chunks
        self.end = end

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            try:
                await self.chunks.aclose()  # the client left mid-stream: abort the choices
            finally:
                self.end.done(200)


async def guarded_sse(
    chunks: AsyncIterator[bytes], tracker: RequestWatch
) -> AsyncGenerator[bytes, None]:
    """SSE framing around a stream: a failure becomes an error event; always ends in [DONE]."""
    status = 200
    try:
        async for data in chunks:
            yield data
    except InhouseError as exc:
        status = exc.status
        yield sse({"error": {"message": exc.message, "type": exc.type, "code": exc.code}})
    except Exception:
        status = 500
        raise
    finally:
        tracker.done(status)
    yield DONE
