"""Per-sequence sampling on llama.cpp: a sampler chain, and a grammar checked lazily.

A grammar sampler has to match every one of the vocabulary's tokens against the grammar,
which costs more than the decode itself on a small model. As llama.cpp's own server does,
a constrained sequence first samples without the grammar and only checks the one token it
drew; only when the grammar refuses that token is the vocabulary filtered (only the groups
of tokens whose start the grammar allows, token_starts.py) and the token drawn again. The
result has the same distribution as filtering the whole vocabulary first.
"""

from __future__ import annotations

import ctypes
from typing import Any

import llama_cpp as ll
import numpy as np
import numpy.typing as npt

from inhouse.engine.request import SamplingParams
from inhouse.engine.token_starts import (
    TOKEN_DATA,
    Ids,
    TokenStarts,
    incomplete_tail,
    token_array,
)

_DEFAULT_SEED = 0xFFFFFFFF  # llama.cpp: pick a random seed
MAX_SAMPLE_S = 0.5  # default engine.max_sample_ms / 1000


def _chain(vocab_size: int, params: SamplingParams) -> Any:
    chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())

    def add(sampler: Any) -> None:
        ll.llama_sampler_chain_add(chain, sampler)

    penalized = params.presence_penalty or params.frequency_penalty
    if penalized or params.repetition_penalty != 1.0:
        add(
            ll.llama_sampler_init_penalties(
                vocab_size,
                min(params.max_tokens, 4096),
                params.repetition_penalty,
                params.frequency_penalty,
                params.presence_penalty,
            )
        )
    if params.temperature == 0.0:
        add(ll.llama_sampler_init_greedy())
        return chain
    if params.top_k > 0:
        add(ll.llama_sampler_init_top_k(params.top_k))
    if params.top_p < 1.0:
        add(ll.llama_sampler_init_top_p(params.top_p, 1))
    if params.min_p > 0.0:
        add(ll.llama_sampler_init_min_p(params.min_p, 1))
    add(ll.llama_sampler_init_temp(params.temperature))
    seed = _DEFAULT_SEED if params.seed is None else params.seed & 0xFFFFFFFF
    add(ll.llama_sampler_init_dist(seed))
    return chain


def sampling_overrun(spent_s: float, budget_s: float) -> str | None:
    """The error that ends a sequence whose token took longer than `budget_s` to sample."""
    if spent_s <= budget_s:
        return None
    return (
        f"sampling one token took {spent_s * 1000:.0f} ms, over the engine's budget of "
        f"{budget_s * 1000:.0f} ms per token (engine.max_sample_ms): the grammar of this "
        "request's response_format or tool call is too costly to follow"
    )


class SequenceSampler:
    """Draws the next token of one sequence from a row of logits; lives as long as it."""

    def __init__(
        self,
        vocab: Any,
        vocab_size: int,
        params: SamplingParams,
        starts: TokenStarts | None = None,
    ) -> None:
        """`starts` (the vocabulary's TokenStarts) is needed when `params` has a grammar."""
        self._vocab_size = vocab_size
        self._chain = _chain(vocab_size, params)
        self._grammar: Any = None
        if params.grammar is not None:
            self._grammar = ll.llama_sampler_init_grammar(vocab, params.grammar.encode(), b"root")
            if not self._grammar:
                ll.llama_sampler_free(self._chain)
                raise ValueError("llama.cpp refused the grammar")
            if starts is None:
                self.free()
                raise ValueError("a grammar needs the vocabulary's token starts")
            self._starts = starts
            self._tail = b""  # the output ends inside this UTF-8 character
            self._one = np.zeros(1, dtype=TOKEN_DATA)
            # reused by every draw: no vocabulary-sized allocation per token
            self._candidates = np.zeros(vocab_size, dtype=TOKEN_DATA)
            self._all_ids = np.arange(vocab_size, dtype=np.int32)

    def sample(self, ctx: Any, row: int) -> int:
        if self._grammar is None:
            return int(ll.llama_sampler_sample(self._chain, ctx, row))
        logits = np.ctypeslib.as_array(ll.llama_get_logits_ith(ctx, row), (self._vocab_size,))
        token = self._draw(logits, None)
        if not self._allowed(token):
            # mid-character, a start no longer stands for its group: check them all
            starts = self._starts
            ids = starts.everything if self._tail else starts.candidates(self._grammar)
            token = self._draw(logits, ids)
        ll.llama_sampler_accept(self._grammar, token)
        ll.llama_sampler_accept(self._chain, token)
        self._tail = incomplete_tail(self._tail + self._starts.pieces[token])
        return token

    def _draw(self, logits: npt.NDArray[np.float32], ids: Ids | None) -> int:
        """A token from the chain: unconstrained (`ids` None), else among `ids` the grammar
        accepts (every token it may accept is in `ids`, so the distribution is the same)."""
        candidates = self._candidates[: self._vocab_size if ids is None else len(ids)]
        candidates["id"] = self._all_ids if ids is None else ids
        candidates["logit"] = logits if ids is None else logits[ids]
        candidates["p"] = 0.0
        array = token_array(candidates)
        if ids is not None:
            ll.llama_sampler_apply(self._grammar, ctypes.byref(array))
        ll.llama_sampler_apply(self._chain, ctypes.byref(array))
        return int(array.data[array.selected].id)

    def _allowed(self, token: int) -> bool:
        self._one["id"], self._one["logit"], self._one["p"] = token, 0.0, 0.0
        ll.llama_sampler_apply(self._grammar, ctypes.byref(token_array(self._one)))
        return bool(np.isfinite(self._one["logit"][0]))

    def free(self) -> None:
        ll.llama_sampler_free(self._chain)
        if self._grammar is not None:
            ll.llama_sampler_free(self._grammar)
