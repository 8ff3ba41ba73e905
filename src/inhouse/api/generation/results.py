"""A generation's events collected into final results: text, logprobs, finish, usage."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from inhouse.engine.request import FinishReason, TokenEvent, TokenLogprob
from inhouse.errors import InhouseError

from .events import ChoiceEvent
from .prepare import Prepared


class GenerationFailed(InhouseError):
    status = 500
    type = "server_error"
    code = "generation_failed"


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
