"""A trainer without torch, for the runner's tests: it speaks the real trainer's protocol
(spec.json in; progress.jsonl, checkpoints/step-N/ and final/ out; resume from the newest
checkpoint) and writes a random LoRA of the base model's shapes as the adapter.

Behaviour is steered by files in the job's folder: `fake_step_s` (seconds per step),
`fake_fail` (write an error event and exit 1), `fake_die_at` (SIGKILL itself at that step,
on its first attempt, or every time with
`fake_die_always`). It writes its pid to `fake_pid` for tests that kill it.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import sys
import time
from pathlib import Path

import numpy as np

from inhouse.tuning.lora_check import random_lora
from inhouse.tuning.lora_export import LoraConfig
from inhouse.tuning.trainer.spec import TrainSpec

STEPS_PER_EPOCH = 6


def save_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """The safetensors layout, written by hand: u64 header length, JSON header, raw data."""
    header: dict[str, object] = {}
    offset, blobs = 0, []
    for name, value in tensors.items():
        data = np.ascontiguousarray(value, dtype=np.float32).tobytes()
        header[name] = {
            "dtype": "F32",
            "shape": list(value.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def emit(folder: Path, line: dict[str, object]) -> None:
    with open(folder / "progress.jsonl", "a") as out:
        out.write(json.dumps(line) + "\n")


def latest_checkpoint(folder: Path) -> int:
    steps = [int(p.name.split("-")[1]) for p in (folder / "checkpoints").glob("step-*")]
    return max(steps, default=0)


def main(folder: Path) -> int:
    spec = TrainSpec.from_json((folder / "spec.json").read_text())
    (folder / "fake_pid").write_text(str(os.getpid()))
    if (folder / "fake_fail").exists():
        emit(folder, {"type": "error", "code": "invalid_training_file", "message": "line 3: bad"})
        return 1
    step_s = (
        float((folder / "fake_step_s").read_text()) if (folder / "fake_step_s").exists() else 0.0
    )
    die_at = int((folder / "fake_die_at").read_text()) if (folder / "fake_die_at").exists() else 0
    attempts = folder / "fake_attempts"
    attempt = int(attempts.read_text()) + 1 if attempts.exists() else 1
    attempts.write_text(str(attempt))
    total = spec.epochs * STEPS_PER_EPOCH
    start = latest_checkpoint(folder)
    emit(
        folder,
        {"type": "start", "total_steps": total, "examples": 6, "resumed_from": start or None},
    )
    for step in range(start + 1, total + 1):
        time.sleep(step_s)
        if die_at and step == die_at and (attempt == 1 or (folder / "fake_die_always").exists()):
            os.kill(os.getpid(), signal.SIGKILL)
        emit(
            folder,
            {
                "type": "progress",
                "step": step,
                "total_steps": total,
                "epoch": step / STEPS_PER_EPOCH,
                "loss": 2.0 / step,
                "learning_rate": spec.learning_rate,
                "tokens": step * 100,
                "tokens_per_s": 100.0,
                "eta_s": (total - step) * step_s,
                "time": time.time(),
            },
        )
        if step % spec.checkpoint_every == 0:
            (folder / "checkpoints" / f"step-{step}").mkdir(parents=True, exist_ok=True)
            emit(folder, {"type": "checkpoint", "step": step})
    config = LoraConfig(rank=spec.rank, alpha=spec.alpha, target_modules=("q_proj", "v_proj"))
    final = folder / "final"
    final.mkdir(exist_ok=True)
    save_safetensors(
        final / "adapter_model.safetensors",
        random_lora(Path(spec.base_gguf), [0], config, std=0.001),
    )
    config_json = {"r": spec.rank, "lora_alpha": spec.alpha, "target_modules": ["q_proj", "v_proj"]}
    (final / "adapter_config.json").write_text(json.dumps(config_json))
    emit(
        folder,
        {
            "type": "done",
            "train_loss": 0.5,
            "eval_loss": 1.25,
            "eval_tokens": 40,
            "trained_tokens": total * 100,
            "seconds": total * step_s,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
