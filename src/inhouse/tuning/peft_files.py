"""Read a PEFT LoRA adapter from disk: safetensors weights and adapter_config.json only.

Pickle-based formats (.bin, .pt, .pth, .pkl, .ckpt) can run code when loaded and are refused
by name, before a byte is read. The safetensors reader is numpy-only: every offset and shape
is checked against the file before an array is made.
"""

from __future__ import annotations

import json
import struct
from math import prod
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from inhouse.errors import InvalidRequest
from inhouse.tuning.lora_export import LoraConfig

WEIGHTS_FILE = "adapter_model.safetensors"
CONFIG_FILE = "adapter_config.json"
PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"})
MAX_HEADER_BYTES = 100 << 20
_DTYPES: dict[str, np.dtype[Any]] = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
}


class UnsafeWeightsFile(InvalidRequest):
    """A weights file in a format that unpickles (runs code) when loaded; never read."""

    code = "unsafe_weights_file"


def read_peft_adapter(path: Path) -> tuple[dict[str, npt.NDArray[np.float32]], LoraConfig]:
    """The tensors and LoRA config of a PEFT adapter folder (or its .safetensors file)."""
    weights = path / WEIGHTS_FILE if path.is_dir() else path
    folder = weights.parent
    config = json.loads((folder / CONFIG_FILE).read_text())
    modules = config.get("target_modules") or ()
    lora = LoraConfig(
        rank=int(config["r"]),
        alpha=float(config["lora_alpha"]),
        target_modules=tuple([modules] if isinstance(modules, str) else modules),
    )
    return read_safetensors(weights), lora


def read_safetensors(path: Path) -> dict[str, npt.NDArray[np.float32]]:
    """Every tensor of a safetensors file as float32; other formats are refused."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise UnsafeWeightsFile(
            f"{path.name}: pickle-based weights are refused (loading them can run code); "
            "save the adapter as safetensors (PEFT: save_pretrained(safe_serialization=True))"
        )
    if path.suffix.lower() != ".safetensors":
        raise InvalidRequest(f"{path.name}: adapter weights must be a .safetensors file")
    data = path.read_bytes()
    header, start = _header(data, path.name)
    tensors: dict[str, npt.NDArray[np.float32]] = {}
    for name, entry in header.items():
        if name != "__metadata__":
            tensors[name] = _tensor(data, start, name, entry, path.name)
    return tensors


def _header(data: bytes, label: str) -> tuple[dict[str, Any], int]:
    if len(data) < 8:
        raise InvalidRequest(f"{label} is not a safetensors file (too short)")
    (size,) = struct.unpack_from("<Q", data)
    if size > min(MAX_HEADER_BYTES, len(data) - 8):
        raise InvalidRequest(f"{label}: its header claims {size} bytes; the file is shorter")
    try:
        header = json.loads(data[8 : 8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequest(f"{label}: its header is not JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise InvalidRequest(f"{label}: its header is not a JSON object")
    return header, 8 + size


def _tensor(data: bytes, start: int, name: str, entry: Any, label: str) -> npt.NDArray[np.float32]:
    try:
        dtype = _DTYPES[entry["dtype"]]
        shape = tuple(int(d) for d in entry["shape"])
        begin, end = (int(o) for o in entry["data_offsets"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidRequest(f"{label}: tensor {name!r} is not a float tensor ({exc})") from exc
    if min(shape, default=0) < 0 or not 0 <= begin <= end <= len(data) - start:
        raise InvalidRequest(f"{label}: tensor {name!r} lies outside the file")
    if end - begin != prod(shape) * dtype.itemsize:
        raise InvalidRequest(f"{label}: tensor {name!r} has {end - begin} bytes for {shape}")
    raw = np.frombuffer(data, dtype, prod(shape), start + begin).reshape(shape)
    if entry["dtype"] == "BF16":  # bfloat16 is the top half of a float32
        raw = (raw.astype(np.uint32) << 16).view(np.float32)
    values: npt.NDArray[np.float32] = raw.astype(np.float32)
    return values
