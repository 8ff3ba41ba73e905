"""Prepare: a generation request becomes engine requests (one per choice) under a lease."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from inhouse.config import EngineSettings
from inhouse.engine.grammar import JSON_OBJECT_GRAMMAR, schema_to_grammar
from inhouse.engine.pool import ModelPool
from inhouse.engine.protocol import EngineClient, Lease, Message, RenderedChat
from inhouse.engine.request import GenerationRequest, SamplingParams
from inhouse.errors import ContextLengthExceeded, InvalidRequest
from inhouse.knowledge.search import Hit
from inhouse.models.resolver import ModelResolver

from .grounding import grounded, logged_prompt, new_tag
from .requests import ChatCompletionRequest, CompletionRequest, SamplingFields
from .tools import NO_TOOLS, ToolPlan, call_grammar, plan_tools, render_messages, tool_dicts

MAX_STOP_CHARS = 256
ANSWER_ROOM = 512  # tokens kept for a grounded answer that gives no max_tokens (at most 1/4)
FENCE_TOKENS = 24  # about what a passage's fence lines and origin add


@dataclass(frozen=True)
class Prepared:
    """A validated request: one engine request per choice, and what usage will report.

    It holds a lease on its engine (room for every choice, and the engine kept loaded) that
    whoever ends the request releases."""

    lease: Lease
    choices: list[GenerationRequest]
    prompt_tokens: int
    prompt_texts: list[str]
    tools: ToolPlan = NO_TOOLS
    passages: tuple[Hit, ...] = ()  # knowledge passages in the prompt, best first
    logged_texts: list[str] | None = None  # what the content log keeps; None: prompt_texts

    @property
    def engine(self) -> EngineClient:
        return self.lease.engine

    def with_grammar(self, grammar: str | None) -> Prepared:
        """Every choice sampled under `grammar` (unchanged when None)."""
        if grammar is None:
            return self
        choices = [
            replace(choice, params=replace(choice.params, grammar=grammar))
            for choice in self.choices
        ]
        return replace(self, choices=choices)


@contextlib.contextmanager
def released_on_error(lease: Lease) -> Iterator[None]:
    """Release `lease` if the block raises (the request ends before it is answered)."""
    try:
        yield
    except BaseException:
        lease.release()
        raise


class Preparer:
    """Resolves the model, leases room on its engine, renders and tokenizes the prompt (off
    the event loop), checks the limits and builds each choice's sampling parameters."""

    def __init__(self, pool: ModelPool, resolver: ModelResolver, settings: EngineSettings) -> None:
        self.pool = pool
        self.resolver = resolver
        self.settings = settings

    async def lease(self, name: str, n: int, prompts: int = 1) -> Lease:
        """Room for `n` choices of each of `prompts` prompts on the engine of a model name or
        alias (loading it if needed); Overloaded (503) when it has none."""
        if n > self.settings.max_n:
            raise InvalidRequest(f"n must be at most {self.settings.max_n}", param="n")
        return await self.pool.lease(self.resolver.resolve(name), n * prompts)

    # ----- requests -> engine ------------------------------------------------------------

    async def prepare_chat(
        self, body: ChatCompletionRequest, passages: Sequence[Hit] = ()
    ) -> Prepared:
        """The chat's engine requests, under a lease (released here if preparing fails),
        grounded in as many of `passages` (best first) as the context leaves room for."""
        plan = plan_tools(body)
        # a schema seen for the first time can take a while to compile: off the event loop
        grammar = await asyncio.to_thread(self._grammar, body, plan)
        lease = await self.lease(body.model, body.n)
        with released_on_error(lease):
            return await self._chat(body, lease, plan, grammar, passages)

    async def _chat(
        self,
        body: ChatCompletionRequest,
        lease: Lease,
        plan: ToolPlan,
        grammar: str | None,
        passages: Sequence[Hit],
    ) -> Prepared:
        engine = lease.engine
        native = plan.active and engine.knows_tools
        messages = render_messages(body.messages, plan, native)
        tools = tool_dicts(plan) if native else None
        rendered, used = await self._render_grounded(
            engine, messages, tools, passages, body.token_limit()
        )
        text, tokens = rendered.text, rendered.tokens
        if not tokens:
            raise InvalidRequest("the prompt is empty", param="messages")
        top = (body.top_logprobs or 0) if body.logprobs else None
        if body.top_logprobs is not None and not body.logprobs:
            raise InvalidRequest("top_logprobs requires logprobs to be true", param="top_logprobs")
        prepared = self._prepare(lease, body, [tokens], body.token_limit(), top, [text], grammar)
        logged = [logged_prompt(messages, used)] if used else None
        return replace(prepared, tools=plan, passages=used, logged_texts=logged)

    @staticmethod
    async def _render_grounded(
        engine: EngineClient,
        messages: list[Message],
        tools: list[dict[str, Any]] | None,
        passages: Sequence[Hit],
        max_tokens: int | None,
    ) -> tuple[RenderedChat, tuple[Hit, ...]]:
        """The prompt with the best passages that fit: the answer keeps `max_tokens` (or a
        share of the context) and what does not fit is dropped whole, lowest score first."""
        if not passages:
            return await engine.render_chat(messages, tools), ()
        limit = engine.max_context - (max_tokens or min(ANSWER_ROOM, engine.max_context // 4))
        tag = new_tag()

        async def render(kept: Sequence[Hit]) -> RenderedChat | None:
            """The grounded prompt; None when a passage holds control-token text that this
            model's template cannot keep apart (that passage is left out, like one too long)."""
            try:
                return await engine.render_chat(grounded(messages, kept, tag), tools)
            except InvalidRequest:
                return None

        best = await render(passages[:1])
        if best is None or len(best.tokens) > limit:
            return await engine.render_chat(messages, tools), ()
        # a guess from each further passage's own size; then the rendered prompt decides
        kept, room = [passages[0]], limit - len(best.tokens)
        for hit in passages[1:]:
            room -= len(await engine.tokenize(hit.text)) + FENCE_TOKENS
            if room < 0:
                break
            kept.append(hit)
        while len(kept) > 1:
            rendered = await render(kept)
            if rendered is not None and len(rendered.tokens) <= limit:
                return rendered, tuple(kept)
            kept.pop()
        return best, (passages[0],)

    @staticmethod
    def _grammar(body: ChatCompletionRequest, plan: ToolPlan) -> str | None:
        """The grammar decoding must follow: a JSON response format, or a required tool call."""
        grammar: str | None = None
        response_format = body.response_format
        if response_format is not None and response_format.type == "json_object":
            grammar = JSON_OBJECT_GRAMMAR
        elif response_format is not None and response_format.type == "json_schema":
            if response_format.json_schema is None:
                raise InvalidRequest(
                    "response_format json_schema needs a json_schema", param="response_format"
                )
            grammar = schema_to_grammar(response_format.json_schema.json_schema)
        if plan.forced:
            if grammar is not None:
                raise InvalidRequest(
                    "a required tool call and a JSON response_format cannot be combined",
                    param="tool_choice",
                )
            grammar = call_grammar(plan)
        return grammar

    async def prepare_completion(self, body: CompletionRequest) -> Prepared:
        """The completion's engine requests, under a lease (released here if preparing fails)."""
        if body.suffix:
            raise InvalidRequest("suffix is not supported by this model", param="suffix")
        if body.echo and body.logprobs is not None:
            raise InvalidRequest("echo with logprobs is not supported", param="echo")
        prompts = body.prompts()
        lease = await self.lease(body.model, body.n, len(prompts))
        with released_on_error(lease):
            return await self._completion(body, prompts, lease)

    async def _completion(
        self, body: CompletionRequest, prompts: list[str], lease: Lease
    ) -> Prepared:
        token_lists = [await lease.engine.tokenize(p) for p in prompts]
        if not all(token_lists):
            raise InvalidRequest("the prompt is empty", param="prompt")
        return self._prepare(lease, body, token_lists, body.max_tokens, body.logprobs, prompts)

    def _prepare(
        self,
        lease: Lease,
        body: SamplingFields,
        token_lists: list[list[int]],
        max_tokens: int | None,
        top_logprobs: int | None,
        texts: list[str],
        grammar: str | None = None,
    ) -> Prepared:
        stops = self._stops(body)
        base = uuid.uuid4().hex
        choices: list[GenerationRequest] = []
        for tokens in token_lists:
            limit = self._token_limit(lease.engine.max_context, len(tokens), max_tokens)
            for _ in range(body.n):
                params = SamplingParams(
                    max_tokens=limit,
                    temperature=body.temperature,
                    top_p=body.top_p,
                    top_k=body.top_k,
                    min_p=body.min_p,
                    seed=None if body.seed is None else body.seed + len(choices),
                    presence_penalty=body.presence_penalty,
                    frequency_penalty=body.frequency_penalty,
                    repetition_penalty=body.repetition_penalty,
                    stop=stops,
                    top_logprobs=top_logprobs,
                    grammar=grammar,
                )
                rid = f"{base}-{len(choices)}"
                choices.append(GenerationRequest(rid, tuple(tokens), params))
        prompt_tokens = sum(len(t) for t in token_lists)
        return Prepared(lease, choices, prompt_tokens, texts)

    def _stops(self, body: SamplingFields) -> tuple[str, ...]:
        stops = body.stop_list()
        if len(stops) > self.settings.max_stop:
            raise InvalidRequest(
                f"at most {self.settings.max_stop} stop sequences are allowed", param="stop"
            )
        if any(not s or len(s) > MAX_STOP_CHARS for s in stops):
            raise InvalidRequest(
                f"each stop sequence must have 1 to {MAX_STOP_CHARS} characters", param="stop"
            )
        return tuple(stops)

    @staticmethod
    def _token_limit(max_context: int, prompt_len: int, max_tokens: int | None) -> int:
        room = max_context - prompt_len
        if room < 1 or (max_tokens is not None and max_tokens > room):
            asked = f" + {max_tokens} completion tokens" if max_tokens else ""
            raise ContextLengthExceeded(
                f"This model's maximum context length is {max_context} tokens. However, "
                f"you requested {prompt_len} prompt tokens{asked}. Shorten the messages or "
                "lower max_tokens.",
                param="messages",
            )
        return room if max_tokens is None else max_tokens
