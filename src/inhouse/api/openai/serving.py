"""Wire <-> engine: prompts, limits and sampling parameters in; choices' events out."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from inhouse.config import EngineSettings
from inhouse.engine.client import AsyncEngine
from inhouse.engine.request import GenerationRequest, SamplingParams, TokenEvent
from inhouse.engine.templates import CHATML, ChatTemplate
from inhouse.errors import ContextLengthExceeded, InvalidRequest, ModelNotFound

from .schemas import ChatCompletionRequest, CompletionRequest, SamplingFields

MAX_STOP_CHARS = 256


@dataclass(frozen=True)
class Prepared:
    """A validated request: one engine request per choice, and what usage will report."""

    choices: list[GenerationRequest]
    prompt_tokens: int
    prompt_texts: list[str]


@dataclass(frozen=True)
class ChoiceEvent:
    index: int
    event: TokenEvent


class Serving:
    def __init__(self, engine: AsyncEngine, settings: EngineSettings) -> None:
        self.engine = engine
        self.settings = settings
        info = engine.info
        self.model_name = settings.model_name
        self.template = ChatTemplate(
            info.chat_template or CHATML,
            bos_token=info.bos_token,
            eos_token=info.eos_token,
            adds_bos=info.adds_bos,
        )
        limit = settings.max_context or info.n_ctx_train
        self.max_context = min(limit, settings.kv_cells)

    def check_model(self, name: str) -> None:
        if name != self.model_name:
            raise ModelNotFound(
                f"The model '{name}' does not exist; this server has '{self.model_name}'.",
                param="model",
            )

    # ----- requests -> engine ------------------------------------------------------------

    def prepare_chat(self, body: ChatCompletionRequest) -> Prepared:
        self.check_model(body.model)
        messages = [{**m.model_dump(exclude_none=True), "content": m.text()} for m in body.messages]
        text = self.template.render(messages, add_generation_prompt=True)
        tokens = self.tokenize(text)
        top = (body.top_logprobs or 0) if body.logprobs else None
        if body.top_logprobs is not None and not body.logprobs:
            raise InvalidRequest("top_logprobs requires logprobs to be true", param="top_logprobs")
        return self._prepare(body, [tokens], body.token_limit(), top, [text])

    def prepare_completion(self, body: CompletionRequest) -> Prepared:
        self.check_model(body.model)
        if body.suffix:
            raise InvalidRequest("suffix is not supported by this model", param="suffix")
        if body.echo and body.logprobs is not None:
            raise InvalidRequest("echo with logprobs is not supported", param="echo")
        prompts = body.prompts()
        token_lists = [self.tokenize(p) for p in prompts]
        return self._prepare(body, token_lists, body.max_tokens, body.logprobs, prompts)

    def tokenize(self, text: str) -> list[int]:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidRequest("the request contains text that is not valid UTF-8") from exc
        tokens = self.engine.runner.tokenize(text, add_special=True)
        if not tokens:
            raise InvalidRequest("the prompt is empty", param="prompt")
        return tokens

    def _prepare(
        self,
        body: SamplingFields,
        token_lists: list[list[int]],
        max_tokens: int | None,
        top_logprobs: int | None,
        texts: list[str],
    ) -> Prepared:
        if body.n > self.settings.max_n:
            raise InvalidRequest(f"n must be at most {self.settings.max_n}", param="n")
        stops = self._stops(body)
        base = uuid.uuid4().hex
        choices: list[GenerationRequest] = []
        for tokens in token_lists:
            limit = self._token_limit(len(tokens), max_tokens)
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
                )
                rid = f"{base}-{len(choices)}"
                choices.append(GenerationRequest(rid, tuple(tokens), params))
        prompt_tokens = sum(len(t) for t in token_lists)
        return Prepared(choices, prompt_tokens, texts)

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

    def _token_limit(self, prompt_len: int, max_tokens: int | None) -> int:
        room = self.max_context - prompt_len
        if room < 1 or (max_tokens is not None and max_tokens > room):
            asked = f" + {max_tokens} completion tokens" if max_tokens else ""
            raise ContextLengthExceeded(
                f"This model's maximum context length is {self.max_context} tokens. However, "
                f"you requested {prompt_len} prompt tokens{asked}. Shorten the messages or "
                "lower max_tokens.",
                param="messages",
            )
        return room if max_tokens is None else max_tokens

    # ----- engine -> choices -------------------------------------------------------------

    async def run(self, choices: Sequence[GenerationRequest]) -> AsyncIterator[ChoiceEvent]:
        """All choices' events as they come; cancelling the iteration aborts every choice."""
        if len(choices) == 1:
            async with contextlib.aclosing(self.engine.generate(choices[0])) as events:
                async for event in events:
                    yield ChoiceEvent(0, event)
            return
        merged: asyncio.Queue[ChoiceEvent | BaseException] = asyncio.Queue()

        async def pump(index: int, request: GenerationRequest) -> None:
            try:
                async with contextlib.aclosing(self.engine.generate(request)) as events:
                    async for event in events:
                        merged.put_nowait(ChoiceEvent(index, event))
            except Exception as exc:
                merged.put_nowait(exc)

        tasks = [asyncio.create_task(pump(i, r)) for i, r in enumerate(choices)]
        try:
            remaining = len(choices)
            while remaining:
                item = await merged.get()
                if isinstance(item, BaseException):
                    raise item
                remaining -= item.event.finish_reason is not None
                yield item
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
