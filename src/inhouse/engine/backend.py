"""The interface between the engine core and a model runtime (llama.cpp, or a test fake)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from inhouse.engine.request import SamplingParams, TokenLogprob
from inhouse.engine.scheduler import StepPlan


@dataclass(frozen=True)
class Sampled:
    """A chunk's sampled token, its log-probabilities if asked for, and an error ending it."""

    token: int
    logprob: TokenLogprob | None = None
    error: str | None = None


@dataclass(frozen=True)
class ModelInfo:
    name: str
    path: str
    n_ctx_train: int
    n_params: int
    size_bytes: int
    memory_bytes: int  # weights + KV pool: what unloading this model gives back
    description: str
    chat_template: str | None
    bos_token: str
    eos_token: str
    adds_bos: bool


class ModelRunner(Protocol):
    info: ModelInfo

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        """Token ids of `text`, with BOS (and what else the model adds) when `add_special`.

        With `parse_special`, control-token text (e.g. <|im_start|>) becomes its control
        token; without, it is tokenized as plain text. Only text the server or the caller's
        own raw prompt wrote may be parsed (see engine.prompt)."""
        ...

    def token_bytes(self, token: int) -> bytes:
        """The bytes a token adds to the output (empty for control tokens)."""
        ...

    def is_end_of_generation(self, token: int) -> bool: ...

    def new_sampler(self, params: SamplingParams) -> object:
        """A sampler that lives as long as one sequence (penalties remember its output)."""
        ...

    def free_sampler(self, sampler: object) -> None: ...

    def execute(self, plan: StepPlan) -> list[Sampled] | None:
        """Apply the plan; one Sampled per sampling chunk, in order; None if KV is full."""
        ...

    def close(self) -> None: ...
