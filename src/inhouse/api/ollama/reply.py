"""Ollama's answers: timed NDJSON chunks while streaming, one JSON object otherwise."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from inhouse.api.generation.events import ChoiceEvent
from inhouse.api.generation.pipeline import Generation, client_gone
from inhouse.api.generation.results import finish_reason
from inhouse.errors import InhouseError

Piece = Callable[[str], dict[str, Any]]  # text -> the fields that carry it (message / response)
AfterDone = Callable[[], Awaitable[None]]


def chat_piece(text: str) -> dict[str, Any]:
    return {"message": {"role": "assistant", "content": text}}


def generate_piece(text: str) -> dict[str, Any]:
    return {"response": text}


def created_at() -> str:
    """Now in RFC 3339, UTC, with a `Z`, as Ollama writes it."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def ndjson(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode() + b"\n"


def nanoseconds(seconds: float) -> int:
    return max(0, round(seconds * 1e9))


@dataclass
class Timing:
    """When a request started, had its model ready, and got its first token (perf_counter)."""

    start: float = field(default_factory=time.perf_counter)
    ready: float = 0.0
    first: float | None = None

    def stats(self, prompt_tokens: int, eval_count: int) -> dict[str, int]:
        """Ollama's final counters; durations in nanoseconds up to now."""
        end = time.perf_counter()
        ready = self.ready or self.start
        first = self.first or end
        return {
            "total_duration": nanoseconds(end - self.start),
            "load_duration": nanoseconds(ready - self.start),
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": nanoseconds(first - ready),
            "eval_count": eval_count,
            "eval_duration": nanoseconds(end - first),
        }


@dataclass(frozen=True)
class Answer:
    """One generation to answer in Ollama's shape, and what to do once it is done."""

    generation: Generation
    model: str
    piece: Piece
    timing: Timing
    after: AfterDone | None = None
    first: dict[str, Any] = field(default_factory=dict)  # fields of the first line (citations)

    def chunk(self, text: str) -> dict[str, Any]:
        return {"model": self.model, "created_at": created_at(), **self.piece(text), "done": False}

    def final(self, text: str, reason: str, eval_count: int) -> dict[str, Any]:
        stats = self.timing.stats(self.generation.prepared.prompt_tokens, eval_count)
        head = {"model": self.model, "created_at": created_at(), **self.piece(text)}
        return {**head, "done": True, "done_reason": reason, **stats}


async def respond(request: Request, answer: Answer, stream: bool) -> Response:
    """NDJSON chunks then a final one with counters when `stream`; else the final one alone.
    A client that goes away aborts the generation, streaming or not."""
    if stream:
        return answer.generation.stream(_chunks(answer), "application/x-ndjson")
    try:
        result = await answer.generation.collect(request, _timed(answer))
    finally:  # keep_alive 0 unloads the model however the generation ended
        if answer.after is not None:
            await answer.after()
    if result is None:
        return client_gone()
    choice = result.choices[0]
    payload = answer.final(
        "".join(choice.text), choice.finish_reason or "stop", choice.completion_tokens
    )
    return JSONResponse({**payload, **answer.first})


async def _chunks(answer: Answer) -> AsyncGenerator[bytes, None]:
    """The streamed lines; an error becomes a last `{"error": ...}` line, as Ollama sends it."""
    status = 200
    first = answer.first
    try:
        async for item in _timed(answer):
            event = item.event
            reason = finish_reason(event)
            if event.text:
                yield ndjson({**answer.chunk(event.text), **first})
                first = {}
            if reason is not None:
                yield ndjson({**answer.final("", reason, event.completion_tokens), **first})
    except InhouseError as exc:
        status = exc.status
        yield ndjson({"error": exc.message})
    except Exception:
        status = 500
        raise
    finally:
        answer.generation.ending.done(status)
    if answer.after is not None:
        await answer.after()


async def _timed(answer: Answer) -> AsyncIterator[ChoiceEvent]:
    """The generation's events, noting when the first one came."""
    async for item in answer.generation.events():
        answer.timing.first = answer.timing.first or time.perf_counter()
        yield item
