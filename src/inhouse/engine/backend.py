"""The interface between the engine core and a model runtime (llama.cpp, or a test fake)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from inhouse.engine.request import SamplingParams, TokenLogprob
from inhouse.engine.scheduler import StepPlan


@dataclass(frozen=True)
class Sampled:
    """The token sampled for one chunk, with its log-probabilities when they were asked for."""

    token: int
    logprob: TokenLogprob | None = None


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

    def tokenize(self, text: str, *, add_special: bool) -> list[int]:
        """Token ids of `text`; special-token text (e.g. <|im_start|>) becomes its token."""
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
