"""llama.cpp's side of the LoRA export check: tokens and logits of a GGUF (+ adapter).

In the tests rather than in inhouse.tuning: only the engine imports llama_cpp (import-linter),
and serving goes through the engine; this is a direct, minimal reference run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from llama_cpp import Llama

Logits = npt.NDArray[np.float32]


def llama_tokens(base_gguf: Path, text: str) -> list[int]:
    """`text` as llama.cpp tokenizes it for `base_gguf` (no BOS added)."""
    model = Llama(str(base_gguf), n_ctx=64, vocab_only=True, verbose=False)
    return list(model.tokenize(text.encode(), add_bos=False, special=False))


def llama_logits(base_gguf: Path, tokens: Sequence[int], adapter: Path | None = None) -> Logits:
    """llama.cpp's logits at every position of `tokens`, with `adapter` applied at scale 1."""
    model = Llama(
        str(base_gguf),
        lora_path=None if adapter is None else str(adapter),
        n_ctx=max(64, len(tokens) + 1),
        n_threads=2,
        logits_all=True,
        verbose=False,
    )
    try:
        model.eval(list(tokens))
        return np.array(model.scores[: len(tokens)], dtype=np.float32)
    finally:
        model.close()
