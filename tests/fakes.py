"""FakeRunner: a real ModelRunner over a byte-level toy model, with a checked KV memory.

Tokens are bytes + 1 (token 0 ends generation). Each sequence "generates" a script, one token
per step. The KV memory is simulated cell by cell and every plan is checked against it: a
chunk must continue exactly the tokens its slot holds, so a scheduler bug that shares the
wrong prefix or forgets to clear a slot fails loudly instead of passing silently.
With `stream_cells` set, every slot is a KV stream of its own of that many cells (llama.cpp's
`kv_unified = false`): a copy duplicates cells into the destination stream.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from inhouse.engine.backend import ModelInfo, Sampled
from inhouse.engine.request import SamplingParams, TokenLogprob
from inhouse.engine.scheduler import StepPlan

EOG = 0


@dataclass
class FakeSampler:
    params: SamplingParams
    emitted: int = 0


@dataclass
class FakeRunner:
    script: bytes = b"hello world "
    kv_cells: int = 4096
    stream_cells: int = 0  # 0: one unified pool of kv_cells; else cells per slot's stream
    end_after: int | None = None  # emit EOG after this many tokens
    step_delay: float = 0.0  # seconds per decode step, to keep requests in flight
    kv: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # slot -> cells
    step_sizes: list[int] = field(default_factory=list)
    step_chunks: list[int] = field(default_factory=list)
    computed_tokens: int = 0
    copies: int = 0  # stream copies (stream_cells only)
    live_samplers: int = 0
    _next_cell: int = 0

    def __post_init__(self) -> None:
        self.info = ModelInfo(
            name="fake",
            path="/dev/null",
            n_ctx_train=self.kv_cells,
            n_params=0,
            size_bytes=0,
            memory_bytes=0,
            description="fake byte model",
            chat_template=None,
            bos_token="",
            eos_token="",
            adds_bos=False,
        )

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        return [b + 1 for b in text.encode("utf-8")]

    def token_bytes(self, token: int) -> bytes:
        return b"" if token == EOG else bytes([token - 1])

    def is_end_of_generation(self, token: int) -> bool:
        return token == EOG

    def new_sampler(self, params: SamplingParams) -> object:
        self.live_samplers += 1
        return FakeSampler(params)

    def free_sampler(self, sampler: object) -> None:
        self.live_samplers -= 1

    def used_cells(self) -> int:
        return len({cell for cells in self.kv.values() for cell, _ in cells})

    def execute(self, plan: StepPlan) -> list[Sampled] | None:
        for slot in plan.clear_slots:
            self.kv.pop(slot, None)
        for src, dst, n in plan.copies:
            assert len(self.kv.get(src, [])) >= n, "copy of more tokens than the source holds"
            if self.stream_cells:
                self.kv[dst] = [(self._cell(), token) for _, token in self.kv[src][:n]]
                self.copies += 1
            else:
                assert not self.kv.get(dst), f"copy into a slot that is not empty: {dst}"
                self.kv[dst] = list(self.kv[src][:n])
        for slot, keep in plan.trims:
            assert len(self.kv.get(slot, [])) >= keep, "trim keeps more tokens than held"
            self.kv[slot] = self.kv.get(slot, [])[:keep]
        if not plan.chunks:
            return []
        if not self._fits(plan):
            return None
        time.sleep(self.step_delay)
        out: list[Sampled] = []
        for chunk in plan.chunks:
            cells = self.kv.setdefault(chunk.slot, [])
            held = [token for _, token in cells]
            assert held == chunk.seq.tokens[: chunk.start_pos], "KV does not match the sequence"
            cells.extend((self._cell(), token) for token in chunk.tokens)
            if chunk.sample:
                out.append(self._sample(chunk.seq.sampler))
        self.step_sizes.append(plan.num_tokens)
        self.step_chunks.append(len(plan.chunks))
        self.computed_tokens += plan.num_tokens
        return out

    def _cell(self) -> int:
        self._next_cell += 1
        return self._next_cell

    def _fits(self, plan: StepPlan) -> bool:
        if not self.stream_cells:
            return self.used_cells() + plan.num_tokens <= self.kv_cells
        return all(
            len(self.kv.get(c.slot, [])) + len(c.tokens) <= self.stream_cells for c in plan.chunks
        )

    def _sample(self, sampler: object) -> Sampled:
        assert isinstance(sampler, FakeSampler)
        index = sampler.emitted
        sampler.emitted += 1
        if self.end_after is not None and index >= self.end_after:
            token = EOG
        else:
            token = self.script[index % len(self.script)] + 1
        logprob = None
        if sampler.params.top_logprobs is not None:
            piece = self.token_bytes(token)
            logprob = TokenLogprob(piece.decode("utf-8", "replace"), piece, -0.5)
        return Sampled(token, logprob)

    def close(self) -> None:
        self.kv.clear()
