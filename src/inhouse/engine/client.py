"""AsyncEngine: the EngineClient of one loaded model; the engine runs on its own thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from inhouse.engine.backend import ModelInfo, ModelRunner
from inhouse.engine.core import EngineCore
from inhouse.engine.prompt import TemplateCounts, render_prompt, tokenize_prompt
from inhouse.engine.protocol import EngineStats, Lease, RenderedChat
from inhouse.engine.request import GenerationRequest, TokenEvent
from inhouse.engine.scheduler import Scheduler
from inhouse.engine.templates import CHATML, ChatTemplate, Message
from inhouse.errors import EngineDead, InvalidRequest, Overloaded

log = logging.getLogger(__name__)


NOT_UTF8 = "the request contains text that is not valid UTF-8"


class AsyncEngine:
    """Streams each request's TokenEvents; refuses work beyond `max_pending` with Overloaded.

    It is the `EngineClient` (engine/protocol.py) of one model; the pool also uses its
    lifecycle (start, stop, close, wait_idle)."""

    def __init__(
        self,
        runner: ModelRunner,
        scheduler: Scheduler,
        *,
        max_queue: int,
        max_context: int = 0,
    ) -> None:
        self.runner = runner
        info = runner.info
        self.template_counts: TemplateCounts = {}  # see engine.prompt.tokenize_prompt
        self.template = ChatTemplate(
            info.chat_template or CHATML,
            bos_token=info.bos_token,
            eos_token=info.eos_token,
            adds_bos=info.adds_bos,
        )
        limit = max_context or info.n_ctx_train
        self.max_context = min(limit, scheduler.kv_cells)
        self.max_pending = scheduler.max_running + max_queue
        self.core = EngineCore(runner, scheduler, self._from_engine_thread)
        self._queues: dict[str, asyncio.Queue[TokenEvent]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reserved = 0  # requests holding a lease (admitted, streaming or not yet)
        self._idle = asyncio.Event()
        self._idle.set()
        self.idle_since = time.monotonic()

    @property
    def info(self) -> ModelInfo:
        return self.runner.info

    @property
    def alive(self) -> bool:
        return self.core.alive

    @property
    def knows_tools(self) -> bool:
        return self.template.knows_tools

    @property
    def num_pending(self) -> int:
        """Requests admitted and not yet ended: leased, whether or not they stream yet."""
        return self._reserved

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.core.start()

    def stop(self) -> None:
        self.core.stop()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the engine; the model is freed only once the engine thread is done with it."""
        if not self.core.close(timeout):
            log.warning(
                "the engine of %s is still in a step after %.0f s; it frees the model when "
                "the step returns",
                self.info.name,
                timeout,
            )

    def reserve(self, n: int = 1) -> Lease:
        """A lease on room for `n` more requests; EngineDead or Overloaded (503) when none."""
        if not self.alive:
            raise EngineDead("the engine is not running")
        if self._reserved + n > self.max_pending:
            raise Overloaded(
                f"the server is at capacity ({self.max_pending} requests); retry shortly"
            )
        self._reserved += n
        self._idle.clear()
        return Lease(self, n, self._give_back)

    def _give_back(self, n: int) -> None:
        self._reserved -= n
        if self._reserved == 0:
            self.idle_since = time.monotonic()
            self._idle.set()

    def stats(self) -> EngineStats:
        core = self.core
        return EngineStats(
            alive=core.alive,
            running=core.num_running,
            waiting=core.num_waiting,
            leased=self._reserved,
            capacity=self.max_pending,
            steps=core.steps,
            preemptions=core.scheduler.num_preemptions,
        )

    async def tokenize(self, text: str) -> list[int]:
        return await asyncio.to_thread(self._tokenize, text)

    def _tokenize(self, text: str) -> list[int]:
        try:
            return self.runner.tokenize(text, add_special=True, parse_special=True)
        except UnicodeEncodeError as exc:  # a lone surrogate from a JSON \ud800 escape
            raise InvalidRequest(NOT_UTF8) from exc

    async def render_chat(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None
    ) -> RenderedChat:
        # a long conversation takes a while to render and tokenize: never on the event loop
        return await asyncio.to_thread(self._render_chat, messages, tools)

    def _render_chat(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None
    ) -> RenderedChat:
        prompt = render_prompt(self.template, messages, tools=tools)
        try:
            tokens = tokenize_prompt(self.runner, prompt, self.template_counts)
        except UnicodeEncodeError as exc:  # a lone surrogate from a JSON \ud800 escape
            raise InvalidRequest(NOT_UTF8) from exc
        return RenderedChat(prompt.text, tokens)

    async def wait_idle(self) -> None:
        """Return once no lease is held (at once when none is)."""
        await self._idle.wait()

    async def generate(
        self, request: GenerationRequest, lease: Lease | None = None
    ) -> AsyncGenerator[TokenEvent, None]:
        """Events of one request, ending with the one that carries finish_reason.

        Runs under `lease` (no capacity check), or under a lease of its own taken at the first
        iteration. Closing the iterator early (client gone) aborts the sequence in the engine.
        """
        own = self.reserve() if lease is None else None
        events: asyncio.Queue[TokenEvent] = asyncio.Queue()
        self._queues[request.request_id] = events
        finished = False
        try:
            self.core.submit(request)
            while not finished:
                event = await events.get()
                finished = event.finish_reason is not None
                yield event
        finally:
            del self._queues[request.request_id]
            if not finished:
                self.abort(request.request_id)
            if own is not None:
                own.release()

    def abort(self, request_id: str) -> None:
        self.core.abort(request_id)

    def _from_engine_thread(self, events: list[TokenEvent]) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody listens any more
            self._loop.call_soon_threadsafe(self._dispatch, events)

    def _dispatch(self, events: list[TokenEvent]) -> None:
        for event in events:
            events_queue = self._queues.get(event.request_id)
            if events_queue is not None:
                events_queue.put_nowait(event)
