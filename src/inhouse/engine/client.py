"""AsyncEngine: submit / stream / abort for asyncio callers; the engine runs on its own thread."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

from inhouse.engine.backend import ModelInfo, ModelRunner
from inhouse.engine.core import EngineCore
from inhouse.engine.request import GenerationRequest, TokenEvent
from inhouse.engine.scheduler import Scheduler
from inhouse.engine.templates import CHATML, ChatTemplate
from inhouse.errors import EngineDead, Overloaded


class AsyncEngine:
    """Streams each request's TokenEvents; refuses work beyond `max_pending` with Overloaded."""

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

    @property
    def info(self) -> ModelInfo:
        return self.runner.info

    @property
    def alive(self) -> bool:
        return self.core.alive

    @property
    def num_pending(self) -> int:
        return len(self._queues)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.core.start()

    def stop(self) -> None:
        self.core.stop()

    def close(self) -> None:
        self.stop()
        self.runner.close()

    def check_capacity(self, n: int = 1) -> None:
        """Raise unless `n` more requests can be queued now."""
        if not self.alive:
            raise EngineDead("the engine is not running")
        if len(self._queues) + n > self.max_pending:
            raise Overloaded(
                f"the server is at capacity ({self.max_pending} requests); retry shortly"
            )

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[TokenEvent, None]:
        """Events of one request, ending with the one that carries finish_reason.

        Closing the iterator early (client gone) aborts the sequence in the engine.
        """
        self.check_capacity()
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
                self.core.abort(request.request_id)

    def _from_engine_thread(self, events: list[TokenEvent]) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody listens any more
            self._loop.call_soon_threadsafe(self._dispatch, events)

    def _dispatch(self, events: list[TokenEvent]) -> None:
        for event in events:
            events_queue = self._queues.get(event.request_id)
            if events_queue is not None:
                events_queue.put_nowait(event)
