"""LlamaRunner: the only module that talks to llama.cpp (through llama-cpp-python's C API).

One context, one `llama_batch` per step, one sampler chain per sequence. A sequence is a
llama.cpp seq id, the scheduler's "slot". The KV memory is either one unified pool shared by
every sequence, or one stream per seq id (`kv_unified = false`): then a decoded token attends
only over its own stream, and a prefix copy across streams copies the whole stream.
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import llama_cpp as ll
import numpy as np

from inhouse.engine.backend import ModelInfo, Sampled
from inhouse.engine.request import SamplingParams, TokenLogprob, TopLogprob
from inhouse.engine.sampler import MAX_SAMPLE_S, SequenceSampler, sampling_overrun
from inhouse.engine.scheduler import Chunk, StepPlan
from inhouse.engine.token_starts import TokenStarts
from inhouse.errors import ModelLoadFailed


@ll.llama_log_callback  # type: ignore[untyped-decorator]
def _quiet_log(level: int, text: bytes, user_data: Any) -> None:
    """llama.cpp logs every load detail to stderr; the engine reports what matters itself."""


class ModelLoadError(ModelLoadFailed):
    pass


def quiet_llama_logs() -> None:
    ll.llama_log_set(_quiet_log, None)
    ll.llama_backend_init()


class LlamaRunner:
    max_sample_s: float = MAX_SAMPLE_S  # per token and sequence; build_engine sets it

    def __init__(
        self,
        path: Path,
        name: str,
        *,
        kv_cells: int,
        n_batch: int,
        n_seq_max: int,
        n_threads: int = 0,
        adapters: Sequence[tuple[Path, float]] = (),
        kv_unified: bool = True,
    ) -> None:
        quiet_llama_logs()
        self._unified = kv_unified
        self._model = ll.llama_model_load_from_file(
            str(path).encode(), ll.llama_model_default_params()
        )
        if not self._model:
            raise ModelLoadError(f"llama.cpp could not load the model file {path}")
        self._vocab = ll.llama_model_get_vocab(self._model)
        self._n_vocab = int(ll.llama_vocab_n_tokens(self._vocab))
        self._ctx = ll.llama_init_from_model(
            self._model,
            self._context_params(kv_cells, n_batch, n_seq_max, n_threads, kv_unified),
        )
        if not self._ctx:
            ll.llama_model_free(self._model)
            raise ModelLoadError(f"llama.cpp could not create a context for {path}")
        self._adapters = self._apply_adapters(adapters)
        self._memory = ll.llama_get_memory(self._ctx)
        self._batch = ll.llama_batch_init(n_batch, 0, 1)
        self._pieces: dict[int, bytes] = {}
        self._starts: TokenStarts | None = None
        # llama.cpp rounds each stream up to a multiple of 256 cells
        self.info = self._read_info(path, name, int(ll.llama_n_ctx(self._ctx)))

    def _apply_adapters(self, adapters: Sequence[tuple[Path, float]]) -> list[Any]:
        """Load GGUF LoRA adapters and set them, with their scales, on this context."""
        if not adapters:
            return []
        handles = []
        for path, _ in adapters:
            handle = ll.llama_adapter_lora_init(self._model, str(path).encode())
            if not handle:
                self.close()
                raise ModelLoadError(f"llama.cpp could not load the LoRA adapter {path}")
            handles.append(handle)
        array = (ll.llama_adapter_lora_p_ctypes * len(handles))(*handles)
        scales = (ctypes.c_float * len(handles))(*(scale for _, scale in adapters))
        if ll.llama_set_adapters_lora(self._ctx, array, len(handles), scales) != 0:
            self.close()
            raise ModelLoadError("llama.cpp refused the LoRA adapter set")
        return handles

    @staticmethod
    def _context_params(
        kv_cells: int, n_batch: int, n_seq_max: int, n_threads: int, kv_unified: bool
    ) -> Any:
        threads = n_threads or os.cpu_count() or 1
        params = ll.llama_context_default_params()
        params.n_ctx = kv_cells
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = n_seq_max
        params.kv_unified = kv_unified
        params.n_threads = threads
        params.n_threads_batch = threads
        params.no_perf = True
        return params

    def _kv_bytes(self, kv_cells: int) -> int:
        """KV memory of the pool: K and V, f16, per layer, for the model's KV heads."""
        n_head = max(1, int(ll.llama_model_n_head(self._model)))
        kv_width = (
            int(ll.llama_model_n_embd(self._model))
            * int(ll.llama_model_n_head_kv(self._model))
            // n_head
        )
        return kv_cells * 2 * int(ll.llama_model_n_layer(self._model)) * kv_width * 2

    def _read_info(self, path: Path, name: str, kv_cells: int) -> ModelInfo:
        buf = ctypes.create_string_buffer(256)
        ll.llama_model_desc(self._model, buf, len(buf))
        template = ll.llama_model_chat_template(self._model, None)
        return ModelInfo(
            name=name,
            path=str(path),
            n_ctx_train=int(ll.llama_model_n_ctx_train(self._model)),
            n_params=int(ll.llama_model_n_params(self._model)),
            size_bytes=path.stat().st_size,
            memory_bytes=int(ll.llama_model_size(self._model)) + self._kv_bytes(kv_cells),
            description=buf.value.decode("utf-8", "replace"),
            chat_template=template.decode("utf-8") if template else None,
            bos_token=self._special_text(ll.llama_vocab_bos(self._vocab)),
            eos_token=self._special_text(ll.llama_vocab_eos(self._vocab)),
            adds_bos=bool(ll.llama_vocab_get_add_bos(self._vocab)),
        )

    # ----- text ---------------------------------------------------------------------------

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        out = (ll.llama_token * capacity)()
        n = ll.llama_tokenize(
            self._vocab, data, len(data), out, capacity, add_special, parse_special
        )
        if n < 0:
            raise ValueError("tokenizer overflow")
        return list(out[:n])

    def token_bytes(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._piece(token, special=False)
            self._pieces[token] = piece
        return piece

    def _piece(self, token: int, *, special: bool) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = ll.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = ll.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        return buf.raw[:n]

    def _special_text(self, token: int) -> str:
        return "" if token < 0 else self._piece(token, special=True).decode("utf-8", "replace")

    def is_end_of_generation(self, token: int) -> bool:
        return bool(ll.llama_vocab_is_eog(self._vocab, token))

    # ----- sampling -----------------------------------------------------------------------

    def new_sampler(self, params: SamplingParams) -> object:
        starts = None if params.grammar is None else self._token_starts()
        return SequenceSampler(self._vocab, self._n_vocab, params, starts)

    def _token_starts(self) -> TokenStarts:
        """The vocabulary grouped by token starts, built on the first constrained request."""
        if self._starts is None:
            pieces = [self.token_bytes(t) for t in range(self._n_vocab)]
            self._starts = TokenStarts(pieces, self.is_end_of_generation)
        return self._starts

    def free_sampler(self, sampler: object) -> None:
        assert isinstance(sampler, SequenceSampler)
        sampler.free()

    # ----- the step -----------------------------------------------------------------------

    def execute(self, plan: StepPlan) -> list[Sampled] | None:
        for slot in plan.clear_slots:
            ll.llama_memory_seq_rm(self._memory, slot, 0, -1)
        for src, dst, n in plan.copies:
            if self._unified:  # the cells are shared, nothing is copied
                ll.llama_memory_seq_cp(self._memory, src, dst, 0, n)
            else:  # across streams llama.cpp copies whole streams (at the next decode)
                ll.llama_memory_seq_cp(self._memory, src, dst, -1, -1)
                ll.llama_memory_seq_rm(self._memory, dst, n, -1)
        for slot, keep in plan.trims:
            ll.llama_memory_seq_rm(self._memory, slot, keep, -1)
        if not plan.chunks:
            return []
        # llama.cpp decodes each run of consecutive seq ids of separate streams as one ubatch
        chunks = plan.chunks if self._unified else sorted(plan.chunks, key=lambda c: c.slot)
        rows = self._fill_batch(chunks)
        rc = ll.llama_decode(self._ctx, self._batch)
        if rc == 1:
            return None
        if rc != 0:
            raise RuntimeError(f"llama_decode failed with code {rc}")
        sampled = {id(chunk): self._sample(row, chunk) for row, chunk in rows}
        return [sampled[id(c)] for c in plan.chunks if c.sample]

    def _fill_batch(self, chunks: list[Chunk]) -> list[tuple[int, Chunk]]:
        batch = self._batch
        token, pos, n_seq_id, seq_id, logits = (
            batch.token,
            batch.pos,
            batch.n_seq_id,
            batch.seq_id,
            batch.logits,
        )
        rows: list[tuple[int, Chunk]] = []
        i = 0
        for chunk in chunks:
            p = chunk.start_pos
            for t in chunk.tokens:
                token[i] = t
                pos[i] = p
                n_seq_id[i] = 1
                seq_id[i][0] = chunk.slot
                logits[i] = 0
                i += 1
                p += 1
            if chunk.sample:
                logits[i - 1] = 1
                rows.append((i - 1, chunk))
        batch.n_tokens = i
        return rows

    def _sample(self, row: int, chunk: Chunk) -> Sampled:
        start = time.perf_counter()
        token = chunk.seq.sampler.sample(self._ctx, row)
        error = sampling_overrun(time.perf_counter() - start, self.max_sample_s)
        top_n = chunk.seq.request.params.top_logprobs
        logprob = None if top_n is None else self._logprob(row, token, top_n)
        return Sampled(token, logprob, error)

    def _logprob(self, row: int, token: int, top_n: int) -> TokenLogprob:
        logits = np.ctypeslib.as_array(ll.llama_get_logits_ith(self._ctx, row), (self._n_vocab,))
        shifted = logits - logits.max()
        logprobs = shifted - np.log(np.exp(shifted).sum())
        top: list[TopLogprob] = []
        if top_n > 0:
            best = np.argpartition(-logprobs, top_n)[:top_n]
            for t in best[np.argsort(-logprobs[best])]:
                top.append(self._top(int(t), float(logprobs[t])))
        chosen = self._top(token, float(logprobs[token]))
        return TokenLogprob(chosen.token, chosen.token_bytes, chosen.logprob, tuple(top))

    def _top(self, token: int, logprob: float) -> TopLogprob:
        data = self.token_bytes(token)
        return TopLogprob(data.decode("utf-8", "replace"), data, logprob)

    def close(self) -> None:
        if getattr(self, "_batch", None) is not None:
            ll.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            ll.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            ll.llama_model_free(self._model)  # also frees the model's LoRA adapters
            self._model = None
