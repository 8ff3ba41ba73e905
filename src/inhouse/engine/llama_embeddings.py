"""LlamaEmbedder: sentence embeddings from a GGUF model (mean-pooled, L2-normalized).

Used when a client asks /v1/embeddings for a chat or embedding model by its name. It has a
llama.cpp context of its own (embeddings on, mean pooling), separate from the generating
engine, and embeds one batch of texts per decode.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import llama_cpp as ll
import numpy as np
import numpy.typing as npt

from inhouse.engine.runner import ModelLoadError, quiet_llama_logs

MAX_SEQS = 16


class LlamaEmbedder:
    def __init__(self, path: Path, name: str, *, n_ctx: int = 2048, threads: int = 0) -> None:
        quiet_llama_logs()
        self.name = name
        self._model = ll.llama_model_load_from_file(
            str(path).encode(), ll.llama_model_default_params()
        )
        if not self._model:
            raise ModelLoadError(f"llama.cpp could not load {path}")
        self._vocab = ll.llama_model_get_vocab(self._model)
        self.max_tokens = min(n_ctx, int(ll.llama_model_n_ctx_train(self._model)))
        params = ll.llama_context_default_params()
        params.n_ctx = self.max_tokens
        params.n_batch = params.n_ubatch = self.max_tokens  # a pooled sequence is one ubatch
        params.n_seq_max = MAX_SEQS
        params.embeddings = True
        params.pooling_type = ll.LLAMA_POOLING_TYPE_MEAN
        params.kv_unified = True
        params.n_threads = params.n_threads_batch = threads or os.cpu_count() or 1
        self._ctx = ll.llama_init_from_model(self._model, params)
        if not self._ctx:
            ll.llama_model_free(self._model)
            raise ModelLoadError(f"llama.cpp could not create an embeddings context for {path}")
        self.dimensions = int(ll.llama_model_n_embd(self._model))
        self._batch = ll.llama_batch_init(self.max_tokens, 0, 1)

    def _tokens(self, text: str) -> list[int]:
        data = text.encode("utf-8")
        out = (ll.llama_token * (len(data) + 8))()
        n = ll.llama_tokenize(self._vocab, data, len(data), out, len(out), True, False)
        return list(out[: max(0, min(n, self.max_tokens))])

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(self._tokens(t)) for t in texts]

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """One unit vector per text, in order; texts are cut at the context length."""
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        group: list[tuple[int, list[int]]] = []
        used = 0
        for index, text in enumerate(texts):
            tokens = self._tokens(text)
            if group and (used + len(tokens) > self.max_tokens or len(group) == MAX_SEQS):
                self._decode(group, out)
                group, used = [], 0
            group.append((index, tokens))
            used += len(tokens)
        if group:
            self._decode(group, out)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        unit: npt.NDArray[np.float32] = out / np.maximum(norms, 1e-12)
        return unit

    def _decode(self, group: list[tuple[int, list[int]]], out: npt.NDArray[np.float32]) -> None:
        batch, i = self._batch, 0
        for seq, (_, tokens) in enumerate(group):
            for pos, token in enumerate(tokens):
                batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, pos, 1
                batch.seq_id[i][0], batch.logits[i] = seq, 1
                i += 1
        batch.n_tokens = i
        ll.llama_memory_clear(ll.llama_get_memory(self._ctx), True)
        if ll.llama_decode(self._ctx, batch) != 0:
            raise RuntimeError("llama_decode failed while embedding")
        for seq, (index, _) in enumerate(group):
            vector = ll.llama_get_embeddings_seq(self._ctx, seq)
            out[index] = np.ctypeslib.as_array(vector, (self.dimensions,))

    def close(self) -> None:
        if self._ctx:
            ll.llama_batch_free(self._batch)
            ll.llama_free(self._ctx)
            ll.llama_model_free(self._model)
            self._ctx = self._model = None

    def __del__(self) -> None:
        # dropped by the LRU of GGUFEmbeddings once no request holds it any more
        if getattr(self, "_ctx", None):
            self.close()
