"""Is the exported GGUF LoRA right? llama.cpp + exported adapter against transformers + peft.

On the default model (SmolLM2-135M, Q4_1), a random rank-4 LoRA on q/k/v/o of a few layers is
exported twice: correctly (q/k lora_b rows permuted per head) and naively (not permuted).
For one prompt it prints the max |logit| difference of each against the torch reference,
the adapter's own effect (base vs tuned) on each side, and next-token agreement; the figures
go to benchmarks/results/lora_export_check.json. Needs the `inhouse[tuning]` extra.

Run: PYTHONPATH=src:. python benchmarks/lora_export_check.py
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from inhouse.models.default import default_model_path
from inhouse.tuning.lora_check import (
    float32_copy,
    max_abs_diff,
    random_lora,
    torch_logits,
    unpermute_rows,
)
from inhouse.tuning.lora_export import LoraConfig, export_lora
from tests.tuning.lora_llama import llama_logits, llama_tokens

PROMPT = "The capital of France is Paris. The capital of Germany is"
LAYERS = (0, 7, 15, 29)
CONFIG = LoraConfig(rank=4, alpha=8.0, target_modules=("q_proj", "k_proj", "v_proj", "o_proj"))
N_HEAD, N_HEAD_KV = 9, 3  # SmolLM2-135M
RESULTS = Path(__file__).parent / "results" / "lora_export_check.json"


def naive(adapter: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Tensors that the exporter turns into a file with q/k lora_b NOT permuted."""
    heads = {"q_proj": N_HEAD, "k_proj": N_HEAD_KV}
    out = dict(adapter)
    for name, value in adapter.items():
        for kind, n_head in heads.items():
            if f".{kind}.lora_B." in name:
                out[name] = unpermute_rows(value, n_head)
    return out


def main() -> None:
    packaged = default_model_path()
    adapter = random_lora(packaged, LAYERS, CONFIG, seed=11, std=0.05)
    tokens = llama_tokens(packaged, PROMPT)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        base = float32_copy(packaged, Path(folder) / "base-f32.gguf")
        right = export_lora(adapter, CONFIG, base, Path(folder) / "right.gguf")
        wrong = export_lora(naive(adapter), CONFIG, base, Path(folder) / "naive.gguf")
        cpp_base = llama_logits(base, tokens)
        cpp_right = llama_logits(base, tokens, right)
        cpp_wrong = llama_logits(base, tokens, wrong)
        torch_base, torch_tuned = torch_logits(base, tokens, adapter, CONFIG)
    rows = {
        "llama.cpp base vs torch base (arithmetic noise)": max_abs_diff(cpp_base, torch_base),
        "adapter effect in torch (tuned vs base)": max_abs_diff(torch_tuned, torch_base),
        "adapter effect in llama.cpp (permuted)": max_abs_diff(cpp_right, cpp_base),
        "llama.cpp permuted vs torch tuned": max_abs_diff(cpp_right, torch_tuned),
        "llama.cpp NOT permuted vs torch tuned": max_abs_diff(cpp_wrong, torch_tuned),
        "delta permuted vs torch delta": max_abs_diff(
            cpp_right - cpp_base, torch_tuned - torch_base
        ),
        "delta NOT permuted vs torch delta": max_abs_diff(
            cpp_wrong - cpp_base, torch_tuned - torch_base
        ),
    }
    top1 = {
        "top-1 agreement, permuted": float(np.mean(cpp_right.argmax(1) == torch_tuned.argmax(1))),
        "top-1 agreement, NOT permuted": float(
            np.mean(cpp_wrong.argmax(1) == torch_tuned.argmax(1))
        ),
        "top-1 agreement, base": float(np.mean(cpp_base.argmax(1) == torch_base.argmax(1))),
    }
    width = max(map(len, [*rows, *top1]))
    print(f"{len(tokens)} tokens, layers {LAYERS}, rank {CONFIG.rank}, alpha {CONFIG.alpha}")
    print(f"{'max |logit difference| over all positions':<{width}}  value")
    for name, value in {**rows, **top1}.items():
        print(f"{name:<{width}}  {value:.4f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "tokens": len(tokens),
        "layers": LAYERS,
        "rank": CONFIG.rank,
        "alpha": CONFIG.alpha,
        "max_abs_logit_diff": rows,
        "top1": top1,
        "seconds": time.perf_counter() - started,
    }
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
