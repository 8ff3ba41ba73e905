"""The torch side of checking an exported adapter: what transformers + peft compute.

`torch_logits` loads a GGUF with transformers (which dequantizes it and undoes the q/k row
permutation) and applies PEFT tensors with peft, returning the logits of every position, to
compare number for number with llama.cpp running the exported adapter on a `float32_copy`
of the same base. torch, transformers and peft come from the `inhouse[tuning]` extra.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from inhouse.models.gguf import read_gguf
from inhouse.tuning.gguf_writing import architecture, copy_metadata, write_atomically
from inhouse.tuning.lora_export import LoraConfig, gguf_tensor_name

Logits = npt.NDArray[np.float32]
_LAYER = re.compile(r"\.layers\.(\d+)\.")


def random_lora(
    base_gguf: Path, layers: Sequence[int], config: LoraConfig, *, seed: int = 0, std: float = 0.05
) -> dict[str, npt.NDArray[np.float32]]:
    """A random PEFT LoRA (Hugging Face names and layout) for `base_gguf`'s tensor shapes."""
    shapes = read_gguf(base_gguf).tensors
    rng = np.random.default_rng(seed)
    tensors: dict[str, npt.NDArray[np.float32]] = {}
    for layer in layers:
        for kind in config.target_modules:
            part = "mlp" if kind in ("gate_proj", "up_proj", "down_proj") else "self_attn"
            module = f"model.layers.{layer}.{part}.{kind}"
            n_in, n_out = shapes[gguf_tensor_name(module, layer + 1) or module]
            prefix = f"base_model.model.{module}"
            a = rng.standard_normal((config.rank, n_in)) * std
            tensors[f"{prefix}.lora_A.weight"] = a.astype(np.float32)
            b = rng.standard_normal((n_out, config.rank)) * std
            tensors[f"{prefix}.lora_B.weight"] = b.astype(np.float32)
    return tensors


def unpermute_rows(weight: npt.NDArray[np.float32], n_head: int) -> npt.NDArray[np.float32]:
    """The inverse of `lora_export.permute_rows`: GGUF -> Hugging Face row order."""
    rows = weight.shape[0]
    split = weight.reshape(n_head, rows // n_head // 2, 2, *weight.shape[1:])
    return np.ascontiguousarray(split.swapaxes(1, 2).reshape(weight.shape))


def float32_copy(base_gguf: Path, out: Path) -> Path:
    """`base_gguf` with every tensor dequantized to F32: the weights transformers computes with,
    so that llama.cpp and torch differ only by arithmetic, not by quantized matmuls."""
    import gguf

    reader = gguf.GGUFReader(base_gguf)

    def fill(writer: gguf.GGUFWriter) -> None:
        copy_metadata(reader, writer)
        writer.add_file_type(gguf.LlamaFileType.ALL_F32)
        for tensor in reader.tensors:
            values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
            writer.add_tensor(tensor.name, values.astype(np.float32))

    return write_atomically(out, architecture(reader), fill)


def torch_logits(
    base_gguf: Path,
    tokens: Sequence[int],
    adapter: Mapping[str, npt.NDArray[np.float32]],
    config: LoraConfig,
) -> tuple[Logits, Logits]:
    """transformers + peft logits at every position of `tokens`: (base, base + adapter)."""
    import torch
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model, set_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(2)
    base = AutoModelForCausalLM.from_pretrained(
        str(base_gguf.parent), gguf_file=base_gguf.name, dtype=torch.float32
    )
    layers = sorted({int(m.group(1)) for m in map(_LAYER.search, adapter) if m})
    peft_config = PeftLoraConfig(
        r=config.rank,
        lora_alpha=cast(int, config.alpha),  # typed int by peft, used as alpha / r
        target_modules=list(config.target_modules),
        layers_to_transform=layers,
        lora_dropout=0.0,
    )
    model: Any = get_peft_model(base, peft_config)
    state = {name: torch.from_numpy(np.ascontiguousarray(v)) for name, v in adapter.items()}
    loaded: Any = set_peft_model_state_dict(model, state)
    if loaded.unexpected_keys:
        raise ValueError(f"peft did not take {loaded.unexpected_keys[:3]}")
    model.eval()
    ids = torch.tensor([list(tokens)])
    with torch.no_grad():
        tuned = model(ids).logits[0].numpy()
        with model.disable_adapter():
            plain = model(ids).logits[0].numpy()
    return plain.astype(np.float32), tuned.astype(np.float32)


def max_abs_diff(a: Logits, b: Logits) -> float:
    """The largest absolute difference between two logit arrays of the same shape."""
    return float(np.max(np.abs(a - b)))
