"""What the serving layer may ask of a model's engine, and nothing more.

The API prepares, admits and streams requests through this protocol; the engine's thread,
scheduler, runner and llama.cpp context stay behind it."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from inhouse.engine.request import GenerationRequest, TokenEvent
from inhouse.engine.templates import Message as Message  # render_chat takes these


@dataclass(frozen=True)
class RenderedChat:
    """A conversation rendered by the model's chat template, and its tokens."""

    text: str
    tokens: list[int]


@dataclass(frozen=True)
class EngineStats:
    """A loaded engine's live counters, read at scrape or health-check time."""

    alive: bool
    running: int  # sequences decoding in the batch
    waiting: int  # requests waiting for a sequence slot
    leased: int  # requests holding a lease (admitted, streaming or not yet)
    capacity: int  # the most requests that may hold a lease at once
    steps: int  # decode steps run since the engine started
    preemptions: int  # sequences preempted for KV room (unified KV layout only)


class EngineClient(Protocol):
    """One loaded model as its callers see it."""

    @property
    def max_context(self) -> int:
        """The most tokens (prompt + completion) one request may hold."""

    @property
    def knows_tools(self) -> bool:
        """Whether the model's chat template renders tool definitions itself."""

    def reserve(self, n: int = 1) -> Lease:
        """Room for `n` more requests, or EngineDead / Overloaded (503) when there is none."""

    def generate(
        self, request: GenerationRequest, lease: Lease | None = None
    ) -> AsyncGenerator[TokenEvent, None]:
        """The request's events, ending with the one that carries its finish_reason."""

    def abort(self, request_id: str) -> None:
        """End a request early; its stream ends with an aborted event."""

    async def tokenize(self, text: str) -> list[int]:
        """Tokens of a raw prompt that the caller wrote whole, control-token text included
        (off the event loop)."""

    async def render_chat(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None
    ) -> RenderedChat:
        """The conversation through the chat template, tokenized so that only the template's
        own text becomes control tokens (off the event loop)."""

    def stats(self) -> EngineStats:
        """The engine's live counters."""


class Lease:
    """Room for `n` requests reserved in one engine, from a request's preparation to its end.

    While any lease is held the engine counts as busy, so its pool never unloads it.
    `release` is idempotent: however the request ends, the room is given back once."""

    def __init__(self, engine: EngineClient, n: int, give_back: Callable[[int], None]) -> None:
        self.engine = engine
        self.n = n
        self._give_back = give_back
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._give_back(self.n)
