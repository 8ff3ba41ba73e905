"""GGUF files that llama.cpp really loads, for tests that serve more than the default model.

`write_tiny_llama` writes a llama-architecture model with random weights (garbage text, but a
real forward pass) that borrows the default SmolLM2 GGUF's tokenizer and chat template, so it
chats like any imported model. `write_smollm2_lora` writes a random LoRA adapter that fits
SmolLM2-135M's tensors and visibly changes its greedy output. Both are deterministic per seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGUFReader, GGUFValueType, GGUFWriter

from inhouse.models.default import default_model_path
from inhouse.models.gguf import read_gguf

LORA_TARGETS = ("attn_q", "attn_v", "ffn_up")


@dataclass(frozen=True)
class TinyShape:
    """Hyperparameters of the tiny model; n_embd must be n_head * head_dim."""

    n_embd: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_head_kv: int = 2
    n_ff: int = 128
    n_ctx: int = 512

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


def tokenizer_metadata(base: Path) -> list[tuple[str, Any, GGUFValueType, GGUFValueType | None]]:
    """Every `tokenizer.*` key of `base` (vocabulary, merges, ids, chat template) with its type."""
    reader = GGUFReader(base)
    out: list[tuple[str, Any, GGUFValueType, GGUFValueType | None]] = []
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        sub_type = field.types[-1] if vtype == GGUFValueType.ARRAY else None
        out.append((key, field.contents(), vtype, sub_type))
    return out


def write_tiny_llama(
    path: Path, *, shape: TinyShape = TinyShape(), seed: int = 0, base: Path | None = None
) -> Path:
    """A loadable llama GGUF with random weights and the tokenizer of `base` (default: SmolLM2).

    The output projection is tied to the F16 token embedding (no `output.weight`), which keeps
    the file at about 8 MB with SmolLM2's 49152-token vocabulary and merges.
    """
    tokenizer = tokenizer_metadata(base or default_model_path())
    n_vocab = next(len(v) for k, v, _, _ in tokenizer if k == "tokenizer.ggml.tokens")
    writer = GGUFWriter(path, "llama")
    writer.add_type("model")
    writer.add_name("tiny random llama")
    writer.add_license("apache-2.0")
    writer.add_file_type(1)  # mostly F16
    writer.add_context_length(shape.n_ctx)
    writer.add_embedding_length(shape.n_embd)
    writer.add_block_count(shape.n_layer)
    writer.add_feed_forward_length(shape.n_ff)
    writer.add_head_count(shape.n_head)
    writer.add_head_count_kv(shape.n_head_kv)
    writer.add_rope_dimension_count(shape.head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(n_vocab)
    for key, value, vtype, sub_type in tokenizer:
        writer.add_key_value(key, value, vtype, sub_type)
    for name, tensor in _tiny_tensors(shape, n_vocab, seed):
        writer.add_tensor(name, tensor)
    _finish(writer)
    return path


def _tiny_tensors(shape: TinyShape, n_vocab: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """Weights in numpy shape (rows = outputs); F32 norms and matrices, an F16 embedding."""
    rng = np.random.default_rng(seed)
    kv_width = shape.n_head_kv * shape.head_dim

    def matrix(rows: int, cols: int) -> np.ndarray:
        weights: np.ndarray = rng.standard_normal((rows, cols)) / np.sqrt(cols)
        return weights.astype(np.float32)

    def norm() -> np.ndarray:
        return np.ones(shape.n_embd, dtype=np.float32)

    # unit-scale embeddings: the tied output then gives well separated logits, so greedy
    # decoding is stable across runs instead of picking among near-ties
    embedding = rng.standard_normal((n_vocab, shape.n_embd)).astype(np.float16)
    tensors: list[tuple[str, np.ndarray]] = [("token_embd.weight", embedding)]
    for i in range(shape.n_layer):
        tensors += [
            (f"blk.{i}.attn_norm.weight", norm()),
            (f"blk.{i}.attn_q.weight", matrix(shape.n_embd, shape.n_embd)),
            (f"blk.{i}.attn_k.weight", matrix(kv_width, shape.n_embd)),
            (f"blk.{i}.attn_v.weight", matrix(kv_width, shape.n_embd)),
            (f"blk.{i}.attn_output.weight", matrix(shape.n_embd, shape.n_embd)),
            (f"blk.{i}.ffn_norm.weight", norm()),
            (f"blk.{i}.ffn_gate.weight", matrix(shape.n_ff, shape.n_embd)),
            (f"blk.{i}.ffn_up.weight", matrix(shape.n_ff, shape.n_embd)),
            (f"blk.{i}.ffn_down.weight", matrix(shape.n_embd, shape.n_ff)),
        ]
    tensors.append(("output_norm.weight", norm()))
    return tensors


def base_matrix_shapes(base: Path) -> dict[str, tuple[int, int]]:
    """Numpy shape (n_out, n_in) of every 2-D tensor of the GGUF model `base`."""
    tensors = read_gguf(base).tensors
    # GGUF stores ne = (n_in, n_out): numpy's shape reversed
    return {name: (ne[1], ne[0]) for name, ne in tensors.items() if len(ne) == 2}


def write_smollm2_lora(
    path: Path,
    *,
    layers: tuple[int, ...] = (0, 1, 2, 3),
    targets: tuple[str, ...] = LORA_TARGETS,
    rank: int = 8,
    strength: float = 0.1,
    seed: int = 0,
    base: Path | None = None,
) -> Path:
    """A random LoRA adapter for `base` (default: SmolLM2-135M) on `layers` x `targets`.

    alpha equals the rank, so llama.cpp applies B @ A times the user's scale; `strength` is the
    standard deviation of the entries of A and B (0.1 changes SmolLM2's greedy answers).
    """
    shapes = base_matrix_shapes(base or default_model_path())
    rng = np.random.default_rng(seed)
    writer = GGUFWriter(path, "llama")
    writer.add_type("adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(rank))
    for layer in layers:
        for target in targets:
            name = f"blk.{layer}.{target}.weight"
            n_out, n_in = shapes[name]
            lora_a = rng.normal(0.0, strength, (rank, n_in)).astype(np.float32)
            lora_b = rng.normal(0.0, strength, (n_out, rank)).astype(np.float32)
            writer.add_tensor(f"{name}.lora_a", lora_a)
            writer.add_tensor(f"{name}.lora_b", lora_b)
    _finish(writer)
    return path


def _finish(writer: GGUFWriter) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
