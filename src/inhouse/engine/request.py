"""What goes into the engine (GenerationRequest) and what comes out (TokenEvent)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True)
class SamplingParams:
    """How to pick each next token; validated by the API layer before it gets here."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    top_logprobs: int | None = None  # None: no logprobs; 0..20: that many alternatives
    grammar: str | None = None  # GBNF with a `root` rule: only text it accepts is sampled


@dataclass(frozen=True)
class GenerationRequest:
    request_id: str
    prompt_tokens: tuple[int, ...]
    params: SamplingParams


class FinishReason(enum.Enum):
    STOP = "stop"
    LENGTH = "length"
    ABORT = "abort"
    ERROR = "error"


@dataclass(frozen=True)
class TopLogprob:
    token: str
    token_bytes: bytes
    logprob: float


@dataclass(frozen=True)
class TokenLogprob:
    """The log-probability of one sampled token and of the most likely alternatives."""

    token: str
    token_bytes: bytes
    logprob: float
    top: tuple[TopLogprob, ...] = ()


@dataclass(frozen=True)
class TokenEvent:
    """New output of one request: text that is safe to send, and, last, why it ended."""

    request_id: str
    text: str
    logprobs: tuple[TokenLogprob, ...] = ()
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    error: str | None = None
