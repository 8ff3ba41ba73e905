"""The one path of every generation: check -> (retrieve) -> prepare -> admit -> stream or
collect.

Whatever the front-end, a request's model permission is checked, its engine requests are
prepared under a lease, its budget is admitted by governance, and its events reach the
metrics and the usage meter; however it ends (finished, failed, client gone), its `Ending`
settles it and releases the lease exactly once."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from inhouse.api.metrics import Metrics
from inhouse.api.watch import Ending, RequestWatch, Watches, unless_disconnected
from inhouse.conversations.stored import CompletionKeeper
from inhouse.errors import InhouseError
from inhouse.governance.budget import Budget
from inhouse.governance.caller import Caller
from inhouse.governance.service import Governance
from inhouse.knowledge.service import KnowledgeService

from .events import ChoiceEvent, choice_events
from .grounding import retrieve
from .keeping import KeepAs, KeepingWatch
from .prepare import Prepared, Preparer, released_on_error
from .requests import ChatCompletionRequest, CompletionRequest
from .results import Collected, collect

CLIENT_CLOSED_REQUEST = 499
Keeping = Callable[[Prepared], RequestWatch]


class Pipeline:
    """Starts generations; each front-end formats what a started one yields."""

    def __init__(
        self,
        preparer: Preparer,
        governance: Governance,
        metrics: Metrics,
        knowledge: KnowledgeService,
    ) -> None:
        self.preparer = preparer
        self.governance = governance
        self.metrics = metrics
        self.knowledge = knowledge
        self.keeper = CompletionKeeper(governance.db)  # completions kept when opted in

    def close(self) -> None:
        """Write the completions still queued to be kept (server shutdown)."""
        self.keeper.close()

    def check_model(self, caller: Caller, model: str) -> None:
        """Refuse a model outside the caller's scope before anything is loaded for it."""
        self.governance.check_model(caller.principal, model)

    async def chat(
        self,
        caller: Caller,
        endpoint: str,
        body: ChatCompletionRequest,
        grammar: str | None = None,
        keep: KeepAs | None = None,
    ) -> Generation:
        """A started chat completion; `grammar`, when given, constrains every choice. With
        `knowledge`, passages retrieved for the caller ground the answer. With `keep`, the
        prompt and choice 0's answer are kept when it ends (a caller with a user only)."""

        async def prepare() -> Prepared:
            passages = []
            if body.knowledge is not None:
                passages = await retrieve(self.knowledge, caller, body.knowledge, body.messages)
            return await self.preparer.prepare_chat(body, passages)

        keeping = self._keeping(caller, body, keep)
        return await self._start(caller, endpoint, body.model, prepare, grammar, keeping)

    async def completion(
        self,
        caller: Caller,
        endpoint: str,
        body: CompletionRequest,
        grammar: str | None = None,
    ) -> Generation:
        """A started text completion of a raw prompt (or several)."""
        return await self._start(
            caller, endpoint, body.model, lambda: self.preparer.prepare_completion(body), grammar
        )

    async def _start(
        self,
        caller: Caller,
        endpoint: str,
        model: str,
        prepare: Callable[[], Awaitable[Prepared]],
        grammar: str | None,
        keeping: Keeping | None = None,
    ) -> Generation:
        self.check_model(caller, model)
        prepared = (await prepare()).with_grammar(grammar)
        with released_on_error(prepared.lease):  # refused by a quota: give the room back
            kept = [] if keeping is None else [keeping(prepared)]
            admission = await self.governance.admit(
                caller.principal, caller.ip, endpoint, model, self._budget(prepared)
            )
        watch = Watches(self.metrics.track(endpoint), admission, *kept)
        return Generation(prepared, Ending(watch, prepared.lease))

    def _keeping(
        self, caller: Caller, body: ChatCompletionRequest, keep: KeepAs | None
    ) -> Keeping | None:
        """The store step's watch, for a caller who is a user (a completion is theirs)."""
        if keep is None or caller.principal.user_id is None:
            return None

        def watch(prepared: Prepared) -> RequestWatch:
            return KeepingWatch(self.keeper, keep, caller.principal, body, prepared)

        return watch

    def _budget(self, prepared: Prepared) -> Budget:
        keep = self.governance.content.enabled
        return Budget(
            prepared.prompt_tokens,
            sum(choice.params.max_tokens for choice in prepared.choices),
            len(prepared.choices),
            "\n\n".join(prepared.logged_texts or prepared.prompt_texts) if keep else "",
        )


@dataclass(frozen=True)
class Generation:
    """An admitted generation: its choices' events, and the end every path must reach."""

    prepared: Prepared
    ending: Ending

    async def events(self) -> AsyncIterator[ChoiceEvent]:
        """The choices' events as they come, metered and timed as they pass; closing the
        iteration early aborts every choice."""
        async for item in choice_events(self.prepared):
            self.ending.on_event(item.event)
            yield item

    async def collect(
        self, request: Request, events: AsyncIterator[ChoiceEvent] | None = None
    ) -> Collected | None:
        """Every choice's whole output (not streaming), then the request's end. None when
        the client went away first: every choice is aborted and the usage says so."""
        status = 200
        try:
            work = collect(events or self.events(), self.prepared)
            return await unless_disconnected(request, work)
        except InhouseError as exc:
            status = exc.status
            raise
        except Exception:
            status = 500
            raise
        finally:
            self.ending.done(status)

    def stream(self, chunks: AsyncGenerator[bytes, None], media_type: str) -> Response:
        """A streamed answer of `chunks` that ends this generation however the stream ends."""
        return EndingStream(chunks, self.ending, media_type)


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
