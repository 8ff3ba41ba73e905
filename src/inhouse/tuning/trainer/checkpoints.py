"""Checkpoints and adapters on disk: safetensors and JSON only, written atomically.

`checkpoints/step-<N>/` holds `adapter_model.safetensors` + `adapter_config.json` (PEFT's
layout), `optimizer.safetensors` (AdamW moments per parameter) and `state.json` (step,
data position, seed, tokens so far). Each is written into a temp folder, flushed, and
renamed into place, so a kill leaves either a whole checkpoint or none. Reading refuses
pickle-based files by name before a byte of them is read: nothing here ever unpickles.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from inhouse.errors import InvalidRequest
from inhouse.tuning.peft_files import (
    CONFIG_FILE,
    PICKLE_SUFFIXES,
    WEIGHTS_FILE,
    UnsafeWeightsFile,
    read_safetensors,
)
from inhouse.tuning.trainer.spec import TrainSpec

OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
KEEP = 2
_STEP_DIR = re.compile(r"step-(\d+)")

Tensors = dict[str, npt.NDArray[np.float32]]


@dataclass(frozen=True)
class Checkpoint:
    """What a resumed run needs: LoRA weights, AdamW moments, and the loop's scalars."""

    step: int
    adapter: Tensors
    optimizer: Tensors
    state: dict[str, Any]


def latest(job_dir: Path) -> Path | None:
    """The newest complete checkpoint folder of a job, if any."""
    found = [(int(m[1]), p) for p in _folders(job_dir) if (m := _STEP_DIR.fullmatch(p.name))]
    return max(found)[1] if found else None


def _folders(job_dir: Path) -> list[Path]:
    root = job_dir / "checkpoints"
    return [p for p in root.iterdir() if p.is_dir()] if root.is_dir() else []


def read_checkpoint(folder: Path) -> Checkpoint:
    """A checkpoint folder's contents; pickle files in it are refused unread."""
    files = weights_file(folder, WEIGHTS_FILE), weights_file(folder, OPTIMIZER_FILE)
    adapter, optimizer = (read_safetensors(file) for file in files)
    try:
        state = json.loads((folder / STATE_FILE).read_text())
        step = int(state["step"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidRequest(
            f"checkpoint {folder.name} has no usable {STATE_FILE} ({exc})"
        ) from None
    return Checkpoint(step, adapter, optimizer, state)


def weights_file(path: Path, name: str = WEIGHTS_FILE) -> Path:
    """The safetensors file `name` in folder `path` (or `path` itself if it is a file);
    UnsafeWeightsFile if only a pickle-based file stands in its place."""
    if path.is_file() or path.suffix.lower() in PICKLE_SUFFIXES:
        return path  # read_safetensors refuses a pickle suffix before opening the file
    target = path / name
    if target.is_file():
        return target
    stem = Path(name).stem
    pickled = sorted(p.name for p in path.glob(f"{stem}.*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickled:
        raise UnsafeWeightsFile(
            f"{path.name}/{pickled[0]}: pickle-based weights are refused (loading them can "
            f"run code); a {name} file is needed"
        )
    raise InvalidRequest(f"{path} has no {name}")


def read_adapter_config(folder: Path) -> dict[str, Any]:
    """adapter_config.json of a PEFT adapter folder, as a dict."""
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise InvalidRequest(f"{folder}: no readable {CONFIG_FILE} ({exc})") from None
    if not isinstance(config, dict):
        raise InvalidRequest(f"{folder}/{CONFIG_FILE} is not a JSON object")
    return config


def write_adapter(folder: Path, adapter: Mapping[str, npt.NDArray[Any]], config: Any) -> None:
    """PEFT's adapter layout in `folder` (which exists): weights and config."""
    _save_tensors(folder / WEIGHTS_FILE, adapter)
    _write_json(folder / CONFIG_FILE, config)


def write_checkpoint(job_dir: Path, checkpoint: Checkpoint, adapter_config: Any) -> Path:
    """checkpoints/step-<N>/ written atomically; only the newest KEEP are kept."""
    root = job_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)

    def fill(temp: Path) -> None:
        write_adapter(temp, checkpoint.adapter, adapter_config)
        _save_tensors(temp / OPTIMIZER_FILE, checkpoint.optimizer)
        _write_json(temp / STATE_FILE, {**checkpoint.state, "step": checkpoint.step})

    target = publish(root / f"step-{checkpoint.step}", fill)
    steps = sorted((int(m[1]), p) for p in _folders(job_dir) if (m := _STEP_DIR.fullmatch(p.name)))
    for _step, old in steps[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def publish(target: Path, fill: Any) -> Path:
    """Fill a temp folder beside `target`, flush it, then swap it into place."""
    temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
    temp.mkdir(parents=True)
    try:
        fill(temp)
        for file in temp.iterdir():
            with file.open("rb") as handle:
                os.fsync(handle.fileno())
        if target.exists():
            shutil.rmtree(target)
        os.replace(temp, target)
        _fsync_dir(target.parent)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return target


def remove_partials(job_dir: Path) -> None:
    """Temp folders a killed run left behind (never a whole checkpoint)."""
    for root in (job_dir, job_dir / "checkpoints"):
        if root.is_dir():
            for stale in root.glob(".*.partial"):
                shutil.rmtree(stale, ignore_errors=True)


def _save_tensors(path: Path, tensors: Mapping[str, npt.NDArray[Any]]) -> None:
    from safetensors.numpy import save_file

    arrays = {name: np.ascontiguousarray(value) for name, value in tensors.items()}
    save_file(arrays, str(path), metadata={"format": "pt"})


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True, default=_jsonable))


def _jsonable(value: Any) -> Any:
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _fsync_dir(folder: Path) -> None:
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def read_init_adapter(path: Path, spec: TrainSpec) -> Tensors:
    """The weights of the adapter to continue from (safetensors only), checked against spec."""
    weights = weights_file(path)
    tensors = read_safetensors(weights)
    config = read_adapter_config(weights.parent)
    modules = config.get("target_modules") or []
    modules = [modules] if isinstance(modules, str) else modules
    if config.get("r") != spec.rank or sorted(modules) != sorted(spec.target_modules):
        raise InvalidRequest(
            f"init_adapter {path} has rank {config.get('r')} on {sorted(modules)}; this job "
            f"trains rank {spec.rank} on {sorted(spec.target_modules)}",
            param="init_adapter",
        )
    return tensors
