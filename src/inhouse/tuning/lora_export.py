"""Export a PEFT LoRA (Hugging Face layout) as a GGUF LoRA adapter that llama.cpp serves.

The file: `general.type=adapter`, `adapter.type=lora`, `adapter.lora.alpha`, and for each
adapted base tensor `<gguf name>.lora_a` (PEFT's `lora_A.weight`, [rank, in]) and
`<gguf name>.lora_b` (PEFT's `lora_B.weight`, [out, rank]); llama.cpp scales by alpha / rank.
Llama GGUFs store `attn_q`/`attn_k` with their rows permuted per head (see `permute_rows`);
the same permutation is applied to those `lora_b`, or the adapter would load and silently
corrupt attention. The file is written beside `out` and renamed into place, so a failed
export leaves no half-written adapter behind.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
import numpy.typing as npt

from inhouse.errors import InvalidModelFile, InvalidRequest
from inhouse.models.gguf import read_gguf
from inhouse.models.store import ModelRecord, ModelStore
from inhouse.tuning.gguf_writing import write_atomically

SUPPORTED_ARCHITECTURES = ("llama",)
PEFT_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_PEFT_NAME = re.compile(
    r"base_model\.model\.(?P<module>model\.layers\.(?P<layer>\d+)\.[a-z_]+\.(?P<kind>[a-z_]+))"
    r"\.lora_(?P<part>[AB])\.weight"
)

Array = npt.NDArray[np.float32]


class UnsupportedBaseModel(InvalidModelFile):
    """The base GGUF is not an architecture whose LoRA layout the exporter knows."""

    code = "unsupported_base_model"


class LoraShapeMismatch(InvalidRequest):
    """The adapter's tensors do not fit the LoRA config or the base model's tensors."""

    code = "lora_shape_mismatch"


@dataclass(frozen=True)
class LoraConfig:
    """What PEFT trained: rank r, lora_alpha, and the projection names it adapted."""

    rank: int
    alpha: float
    target_modules: tuple[str, ...]


@dataclass(frozen=True)
class _Base:
    n_head: int
    n_head_kv: int
    n_blocks: int
    shapes: Mapping[str, tuple[int, ...]]  # ggml order: (in, out)


def export_lora(
    adapter_tensors: Mapping[str, npt.NDArray[np.generic]],
    config: LoraConfig,
    base_gguf: Path,
    out: Path,
) -> Path:
    """Write `adapter_tensors` (PEFT names) as a GGUF LoRA adapter for `base_gguf` at `out`."""
    base = _read_base(base_gguf)
    pairs = _pairs(adapter_tensors, config, base.n_blocks)
    for name, (a, b) in pairs.items():
        _check_fits(name, a, b, base.shapes)
    tensors = {name: (a, _to_gguf_rows(name, b, base)) for name, (a, b) in pairs.items()}
    _write_atomically(tensors, config, out)
    return out


def lora_deltas(
    adapter_tensors: Mapping[str, npt.NDArray[np.generic]], config: LoraConfig, base_gguf: Path
) -> dict[str, Array]:
    """What the adapter adds to each adapted base tensor, in the GGUF's layout and row order:
    {tensor name: alpha / rank x lora_B @ lora_A, shape (out, in)}."""
    base = _read_base(base_gguf)
    deltas: dict[str, Array] = {}
    for name, (a, b) in _pairs(adapter_tensors, config, base.n_blocks).items():
        _check_fits(name, a, b, base.shapes)
        scale = np.float32(config.alpha / config.rank)
        deltas[name] = scale * (_to_gguf_rows(name, b, base) @ a)
    return deltas


def register_adapter(
    store: ModelStore, name: str, base: str, adapter: Path, scale: float = 1.0
) -> ModelRecord:
    """Register `adapter` on model `base` as adapter set `name` (what `models adapter` does)."""
    return store.add_adapter_set(name, base, [(adapter, scale)])


def gguf_tensor_name(module: str, n_blocks: int) -> str | None:
    """The llama GGUF tensor a Hugging Face module adapts (`...q_proj` -> `blk.N.attn_q.weight`)."""
    return _name_map(n_blocks).get_name(module + ".weight", try_suffixes=(".weight",))


@functools.cache
def _name_map(n_blocks: int) -> gguf.TensorNameMap:
    return gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_blocks)


def permute_rows(weight: Array, n_head: int) -> Array:
    """Hugging Face -> GGUF row order of a llama q/k projection: per head, (2, d/2) -> (d/2, 2)."""
    rows = weight.shape[0]
    if rows % (2 * n_head):
        raise LoraShapeMismatch(f"{rows} rows do not split into {n_head} heads of even size")
    split = weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:])
    return np.ascontiguousarray(split.swapaxes(1, 2).reshape(weight.shape))


def _read_base(base_gguf: Path) -> _Base:
    """Check the base is a supported model (safe parser first) and read its head counts."""
    info = read_gguf(base_gguf)
    if info.kind != "model":
        raise InvalidModelFile(f"{base_gguf.name} is an adapter, not a base model")
    if info.architecture not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedBaseModel(
            f"{base_gguf.name} is a {info.architecture!r} model; LoRA export supports "
            f"{', '.join(SUPPORTED_ARCHITECTURES)}-architecture GGUF models only "
            "(e.g. SmolLM2, Llama 2/3)"
        )
    fields = gguf.GGUFReader(base_gguf).fields
    arch = info.architecture

    def number(key: str) -> int | None:
        field = fields.get(f"{arch}.{key}")
        return None if field is None else int(field.contents())

    n_head, n_blocks = number("attention.head_count"), number("block_count")
    if not n_head or not n_blocks:
        raise InvalidModelFile(f"{base_gguf.name} lacks its head or block count")
    return _Base(n_head, number("attention.head_count_kv") or n_head, n_blocks, info.tensors)


def _pairs(
    adapter: Mapping[str, npt.NDArray[np.generic]], config: LoraConfig, n_blocks: int
) -> dict[str, tuple[Array, Array]]:
    """PEFT tensors -> {base GGUF tensor name: (lora_A, lora_B)}, as PEFT has them."""
    parts: dict[str, dict[str, Array]] = {}
    for peft_name, value in adapter.items():
        match = _PEFT_NAME.fullmatch(peft_name)
        if match is None:
            raise LoraShapeMismatch(f"{peft_name!r} is not a PEFT LoRA tensor name")
        kind = match["kind"]
        if kind not in config.target_modules or kind not in PEFT_MODULES:
            raise LoraShapeMismatch(f"{peft_name!r}: {kind} is not a LoRA target of this config")
        target = gguf_tensor_name(match["module"], n_blocks)
        if target is None or int(match["layer"]) >= n_blocks:
            raise LoraShapeMismatch(f"{peft_name!r} has no tensor in the base model")
        parts.setdefault(target, {})[match["part"]] = _matrix(peft_name, value, config.rank)
    pairs: dict[str, tuple[Array, Array]] = {}
    for target, found in sorted(parts.items()):
        if set(found) != {"A", "B"}:
            raise LoraShapeMismatch(f"{target}: PEFT lora_A and lora_B must both be given")
        pairs[target] = (found["A"], found["B"])
    if not pairs:
        raise LoraShapeMismatch("the adapter holds no LoRA tensors")
    return pairs


def _to_gguf_rows(name: str, b: Array, base: _Base) -> Array:
    """lora_B in the base GGUF's row order: q and k rows are permuted per head."""
    if name.endswith("attn_q.weight"):
        return permute_rows(b, base.n_head)
    if name.endswith("attn_k.weight"):
        return permute_rows(b, base.n_head_kv)
    return b


def _matrix(name: str, value: npt.NDArray[np.generic], rank: int) -> Array:
    """A finite 2-D float32 copy of `value` with `rank` on its LoRA side."""
    if value.ndim != 2 or not np.issubdtype(value.dtype, np.floating):
        raise LoraShapeMismatch(f"{name!r} must be a 2-D float matrix, not {value.shape}")
    side = value.shape[0] if ".lora_A." in name else value.shape[1]
    if side != rank:
        raise LoraShapeMismatch(f"{name!r} {list(value.shape)} does not have rank {rank}")
    matrix = np.asarray(value, dtype=np.float32)
    if not np.isfinite(matrix).all():
        raise LoraShapeMismatch(f"{name!r} holds NaN or infinite values")
    return matrix


def _check_fits(name: str, a: Array, b: Array, base: Mapping[str, tuple[int, ...]]) -> None:
    """A is [rank, in] and B [out, rank] for a base tensor of ggml shape (in, out)."""
    shape = base.get(name)
    if shape is None or len(shape) != 2:
        raise LoraShapeMismatch(f"{name} is not a matrix of the base model")
    n_in, n_out = shape
    if a.shape[1] != n_in or b.shape[0] != n_out:
        raise LoraShapeMismatch(
            f"{name}: lora_A {list(a.shape)} and lora_B {list(b.shape)} do not fit "
            f"the base tensor [{n_out}, {n_in}] (out, in); wrong base model?"
        )


def _write_atomically(
    tensors: Mapping[str, tuple[Array, Array]], config: LoraConfig, out: Path
) -> None:
    """Write the adapter to a temp file beside `out`, flush it to disk, then rename."""

    def fill(writer: gguf.GGUFWriter) -> None:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(config.alpha))
        for name, (a, b) in tensors.items():
            writer.add_tensor(f"{name}.lora_a", a)
            writer.add_tensor(f"{name}.lora_b", b)

    write_atomically(out, SUPPORTED_ARCHITECTURES[0], fill)
