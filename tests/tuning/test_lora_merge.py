"""A merged GGUF (base + adapter in one file) computes what the base with the adapter
computes in llama.cpp, and not what the base alone does."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inhouse.models.default import default_model_path
from inhouse.tuning.lora_check import float32_copy, max_abs_diff, random_lora
from inhouse.tuning.lora_export import LoraConfig, export_lora
from inhouse.tuning.lora_merge import merge_lora
from tests.tuning.lora_llama import llama_logits, llama_tokens

CONFIG = LoraConfig(rank=4, alpha=8.0, target_modules=("q_proj", "k_proj", "v_proj", "up_proj"))
PROMPT = "The capital of France is Paris. The capital of Germany is"


def test_a_merged_model_answers_as_the_base_with_its_adapter(tmp_path: Path) -> None:
    packaged = default_model_path()
    adapter = random_lora(packaged, (0, 15, 29), CONFIG, seed=5)
    # the same weights unquantized, so that only the merge differs (a quantized matmul also
    # quantizes the activations)
    base = float32_copy(packaged, tmp_path / "base-f32.gguf")
    tokens = llama_tokens(base, PROMPT)
    exported = export_lora(adapter, CONFIG, base, tmp_path / "a.gguf")
    with_adapter = llama_logits(base, tokens, exported)
    merged = llama_logits(merge_lora(adapter, CONFIG, packaged, tmp_path / "m.gguf"), tokens)
    plain = llama_logits(base, tokens)
    assert max_abs_diff(plain, with_adapter) > 1.0  # the adapter matters
    assert max_abs_diff(merged, with_adapter) < 0.1 * max_abs_diff(plain, with_adapter)
    assert int(np.argmax(merged[-1])) == int(np.argmax(with_adapter[-1]))
    assert not list(tmp_path.glob(".*partial"))
