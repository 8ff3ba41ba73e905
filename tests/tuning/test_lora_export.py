"""Export of a PEFT LoRA as a GGUF adapter: it loads in llama.cpp, it computes what peft
computes in torch (q/k permutation included), it registers as an adapter set, and bad input
(pickle weights, a non-llama base, wrong shapes, a full disk) is refused cleanly."""

from __future__ import annotations

import importlib.util
import json
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import numpy.typing as npt
import pytest

from inhouse.errors import InvalidRequest
from inhouse.models.default import default_model_path
from inhouse.models.store import ModelStore
from inhouse.tuning.lora_check import (
    float32_copy,
    max_abs_diff,
    random_lora,
    torch_logits,
    unpermute_rows,
)
from inhouse.tuning.lora_export import (
    LoraConfig,
    LoraShapeMismatch,
    UnsupportedBaseModel,
    export_lora,
    permute_rows,
    register_adapter,
)
from inhouse.tuning.peft_files import UnsafeWeightsFile, read_peft_adapter, read_safetensors
from tests.conftest import need
from tests.gguf_files import write_model
from tests.tuning.lora_llama import llama_logits, llama_tokens

CONFIG = LoraConfig(rank=4, alpha=8.0, target_modules=("q_proj", "k_proj", "v_proj", "o_proj"))
LAYERS = (0, 15, 29)
PROMPT = "The capital of France is Paris. The capital of Germany is"
TORCH = all(importlib.util.find_spec(m) for m in ("torch", "transformers", "peft"))
Tensors = dict[str, npt.NDArray[np.float32]]


def lora_b(adapter: Tensors, layer: int, kind: str) -> npt.NDArray[np.float32]:
    return adapter[f"base_model.model.model.layers.{layer}.self_attn.{kind}.lora_B.weight"]


def gguf_tensors(path: Path) -> dict[str, npt.NDArray[np.float32]]:
    return {t.name: np.array(t.data) for t in gguf.GGUFReader(path).tensors}


def write_safetensors(path: Path, tensors: Tensors) -> Path:
    """The safetensors layout: u64 header size, JSON header, raw little-endian data."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    blobs, offset = [], 0
    for name, value in tensors.items():
        raw = np.ascontiguousarray(value, dtype="<f4").tobytes()
        header[name] = {
            "dtype": "F32",
            "shape": list(value.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    return path


def test_export_serves_in_llama_cpp_and_registers(tmp_path: Path) -> None:
    """The file llama.cpp loads: tensor names, alpha, permuted q/k B; it changes the logits,
    and a zero adapter does not; the store takes it as an adapter set on the default model."""
    base = default_model_path()
    adapter = random_lora(base, LAYERS, CONFIG, seed=3)
    out = export_lora(adapter, CONFIG, base, tmp_path / "tuned.gguf")
    assert [p.name for p in tmp_path.iterdir()] == ["tuned.gguf"]  # no temp file left
    reader = gguf.GGUFReader(out)
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.type"].contents() == "lora"
    assert reader.fields["adapter.lora.alpha"].contents() == 8.0
    written = gguf_tensors(out)
    assert len(written) == 2 * 4 * len(LAYERS)
    np.testing.assert_array_equal(
        written["blk.15.attn_q.weight.lora_b"], permute_rows(lora_b(adapter, 15, "q_proj"), 9)
    )
    np.testing.assert_array_equal(
        written["blk.15.attn_k.weight.lora_b"], permute_rows(lora_b(adapter, 15, "k_proj"), 3)
    )
    np.testing.assert_array_equal(
        written["blk.15.attn_v.weight.lora_b"], lora_b(adapter, 15, "v_proj")
    )
    assert not np.array_equal(written["blk.15.attn_q.weight.lora_b"], lora_b(adapter, 15, "q_proj"))

    zero = {k: (v if ".lora_A." in k else np.zeros_like(v)) for k, v in adapter.items()}
    tokens = llama_tokens(base, PROMPT)[:8]
    plain = llama_logits(base, tokens)
    tuned = llama_logits(base, tokens, out)
    assert max_abs_diff(plain, tuned) > 0.5
    no_op = llama_logits(base, tokens, export_lora(zero, CONFIG, base, tmp_path / "zero.gguf"))
    assert max_abs_diff(plain, no_op) < 1e-3

    store = ModelStore(tmp_path / "home")
    store.ensure_default()
    record = register_adapter(store, "smollm2-tuned", "smollm2", out, scale=1.0)
    assert record.kind == "adapter-set" and record.base == "smollm2"
    assert store.resolve("smollm2-tuned").adapters[0].path.read_bytes() == out.read_bytes()


def test_permutation_round_trips() -> None:
    """permute_rows is the llama per-head row permutation and unpermute_rows its inverse."""
    rows = np.arange(24, dtype=np.float32).reshape(24, 1)
    permuted = permute_rows(rows, 3)  # 3 heads of 8 rows: halves interleaved per head
    assert permuted[:8, 0].tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    np.testing.assert_array_equal(unpermute_rows(permuted, 3), rows)


def test_matches_transformers_and_peft_only_with_the_permutation(tmp_path: Path) -> None:
    """Needs torch (inhouse[tuning]): llama.cpp + exported adapter vs transformers + peft on
    the same dequantized weights; without the q/k permutation the logits are clearly off."""
    need(TORCH, "torch, transformers and peft are not installed (the tuning extra)")
    packaged = default_model_path()
    adapter = random_lora(packaged, LAYERS, CONFIG, seed=11)
    naive = dict(adapter)
    for layer in LAYERS:
        for kind, heads in (("q_proj", 9), ("k_proj", 3)):
            name = f"base_model.model.model.layers.{layer}.self_attn.{kind}.lora_B.weight"
            naive[name] = unpermute_rows(adapter[name], heads)
    base = float32_copy(packaged, tmp_path / "base-f32.gguf")
    tokens = llama_tokens(packaged, PROMPT)[:8]
    right = llama_logits(base, tokens, export_lora(adapter, CONFIG, base, tmp_path / "a.gguf"))
    wrong = llama_logits(base, tokens, export_lora(naive, CONFIG, base, tmp_path / "b.gguf"))
    torch_base, torch_tuned = torch_logits(base, tokens, adapter, CONFIG)
    assert max_abs_diff(torch_tuned, torch_base) > 1.0  # the adapter matters
    assert max_abs_diff(right, torch_tuned) < 0.1
    assert max_abs_diff(wrong, torch_tuned) > 0.5
    assert (right.argmax(1) == torch_tuned.argmax(1)).all()


def test_reads_safetensors_and_refuses_pickle_unread(tmp_path: Path) -> None:
    """A PEFT folder in safetensors exports; a pickle file is refused before it is opened
    (its payload would have created a file)."""
    model = write_model(tmp_path / "toy.gguf")
    config = LoraConfig(rank=2, alpha=4.0, target_modules=("q_proj",))
    prefix = "base_model.model.model.layers.0.self_attn.q_proj"
    rng = np.random.default_rng(0)
    tensors = {
        f"{prefix}.lora_A.weight": rng.standard_normal((2, 8)).astype(np.float32),
        f"{prefix}.lora_B.weight": rng.standard_normal((8, 2)).astype(np.float32),
    }
    folder = tmp_path / "peft"
    folder.mkdir()
    write_safetensors(folder / "adapter_model.safetensors", tensors)
    (folder / "adapter_config.json").write_text(
        json.dumps({"r": 2, "lora_alpha": 4, "target_modules": ["q_proj"]})
    )
    read, read_config = read_peft_adapter(folder)
    assert read_config == config
    np.testing.assert_array_equal(
        read[f"{prefix}.lora_B.weight"], tensors[f"{prefix}.lora_B.weight"]
    )
    out = export_lora(read, read_config, model, tmp_path / "toy-lora.gguf")
    assert set(gguf_tensors(out)) == {"blk.0.attn_q.weight.lora_a", "blk.0.attn_q.weight.lora_b"}

    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Touch(str(marker)))
    for suffix in (".bin", ".pt", ".pkl"):
        hostile = tmp_path / f"adapter_model{suffix}"
        hostile.write_bytes(payload)
        with pytest.raises(UnsafeWeightsFile, match="pickle"):
            read_safetensors(hostile)
    assert not marker.exists()
    truncated = tmp_path / "bad.safetensors"
    truncated.write_bytes((folder / "adapter_model.safetensors").read_bytes()[:-8])
    with pytest.raises(InvalidRequest, match="outside the file"):
        read_safetensors(truncated)


class _Touch:
    """Unpickling this creates a file: proof that a refused pickle was never loaded."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))


def test_refuses_non_llama_base_and_wrong_shapes(tmp_path: Path) -> None:
    """Typed refusals naming the problem; nothing is written."""
    prefix = "base_model.model.model.layers.0.self_attn.q_proj"
    config = LoraConfig(rank=2, alpha=4.0, target_modules=("q_proj",))
    good = {
        f"{prefix}.lora_A.weight": np.ones((2, 8), np.float32),
        f"{prefix}.lora_B.weight": np.ones((8, 2), np.float32),
    }
    qwen = write_model(tmp_path / "qwen.gguf", arch="qwen2")
    with pytest.raises(UnsupportedBaseModel, match="'qwen2' model; LoRA export supports llama"):
        export_lora(good, config, qwen, tmp_path / "x.gguf")
    toy = write_model(tmp_path / "toy.gguf")
    wrong_in = {**good, f"{prefix}.lora_A.weight": np.ones((2, 12), np.float32)}
    with pytest.raises(LoraShapeMismatch, match="do not fit the base tensor"):
        export_lora(wrong_in, config, toy, tmp_path / "x.gguf")
    wrong_out = {**good, f"{prefix}.lora_B.weight": np.ones((12, 2), np.float32)}
    with pytest.raises(LoraShapeMismatch, match=r"lora_B \[12, 2\] do not fit"):
        export_lora(wrong_out, config, toy, tmp_path / "x.gguf")
    with pytest.raises(LoraShapeMismatch, match="does not have rank 4"):
        export_lora(good, LoraConfig(4, 8.0, ("q_proj",)), toy, tmp_path / "x.gguf")
    with pytest.raises(LoraShapeMismatch, match="not a LoRA target"):
        export_lora(good, LoraConfig(2, 4.0, ("v_proj",)), toy, tmp_path / "x.gguf")
    with pytest.raises(LoraShapeMismatch, match="lora_A and lora_B"):
        export_lora(
            {f"{prefix}.lora_A.weight": good[f"{prefix}.lora_A.weight"]},
            config,
            toy,
            tmp_path / "x.gguf",
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qwen.gguf", "toy.gguf"]


def test_full_disk_leaves_no_adapter(tmp_path: Path) -> None:
    """A write that fails part-way (file size limit, as a full disk) leaves neither the
    adapter nor a partial file; a previous adapter at that path is kept."""
    (tmp_path / "tuned.gguf").write_bytes(b"previous adapter")
    script = f"""
import resource, signal, numpy as np
from pathlib import Path
from inhouse.models.default import default_model_path
from inhouse.tuning.lora_check import random_lora
from inhouse.tuning.lora_export import LoraConfig, export_lora
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
base = default_model_path()
config = LoraConfig(4, 8.0, ("q_proj", "k_proj", "v_proj", "o_proj"))
adapter = random_lora(base, (0, 1, 2), config)
resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
try:
    export_lora(adapter, config, base, Path({str(tmp_path)!r}) / "tuned.gguf")
except OSError as exc:
    print("refused", exc.errno)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert "refused" in done.stdout, done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["tuned.gguf"]
    assert (tmp_path / "tuned.gguf").read_bytes() == b"previous adapter"
