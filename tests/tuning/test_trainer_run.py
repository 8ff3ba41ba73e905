"""The trainer for real (needs the `inhouse[tuning]` extra): the loss mask covers exactly the
assistant text, and a child killed with SIGKILL mid-run resumes from its checkpoint, takes
the same steps an uninterrupted run takes, lowers the loss on repeated data, and leaves a
final adapter that exports to a GGUF LoRA."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gguf

from inhouse.models.default import default_model_path
from inhouse.tuning.lora_export import export_lora
from inhouse.tuning.peft_files import read_peft_adapter
from inhouse.tuning.trainer.data import IGNORE, encode, encode_all
from inhouse.tuning.trainer.progress import read_events
from inhouse.tuning.trainer.spec import TrainSpec
from tests.conftest import need

TORCH = all(importlib.util.find_spec(m) for m in ("torch", "transformers", "peft"))
FACTS = [
    ("What color is the Zorblax logo?", "The Zorblax logo is teal."),
    ("Who founded Zorblax?", "Mira Okafor founded Zorblax in 2011."),
    ("Where is Zorblax based?", "Zorblax is based in Tromso."),
    ("How many people work at Zorblax?", "Zorblax has 42 employees."),
    ("What does Zorblax sell?", "Zorblax sells quantum teapots."),
    ("What is the Zorblax motto?", "Brew the future."),
]


@functools.cache
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    base = default_model_path()
    return AutoTokenizer.from_pretrained(str(base.parent), gguf_file=base.name)


def test_mask_covers_exactly_the_assistant_text() -> None:
    need(TORCH, "torch, transformers and peft are not installed (the tuning extra)")
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello there!"},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Goodbye."},
    ]
    tok = tokenizer()
    example = encode(tok, {"messages": messages}, 200)
    runs: list[list[int]] = []
    for position, (token, label) in enumerate(zip(example.ids, example.labels, strict=True)):
        if label != IGNORE:
            assert label == token
            if runs and runs[-1][-1] == position - 1:
                runs[-1].append(position)
            else:
                runs.append([position])
    texts = [tok.decode([example.ids[i] for i in run]) for run in runs]
    assert texts == ["Hello there!<|im_end|>", "Goodbye.<|im_end|>"]
    rendered = tok.apply_chat_template(messages, tokenize=False)
    assert tok.decode(example.ids) == rendered

    text = encode(tok, {"text": "Plain text is learned everywhere."}, 200)
    assert text.labels == text.ids and text.ids[-1] == tok.eos_token_id
    cut = encode(tok, {"text": "word " * 100}, 16)
    assert len(cut.ids) == 16
    kept, dropped = encode_all(tok, [{"messages": messages}, {"messages": messages}], 12)
    assert (kept, dropped) == ([], 2)  # truncated before any assistant token


def write_job(folder: Path, data: Path) -> Path:
    lines = [
        json.dumps(
            {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        )
        for q, a in FACTS
    ]
    data.write_text("\n".join(lines) + "\n")
    spec = TrainSpec(
        base_gguf=str(default_model_path()),
        train_file=str(data),
        eval_file=str(data),
        format="chat",
        epochs=3,
        max_memory_mb=4096,
        rank=4,
        alpha=8.0,
        target_modules=("q_proj", "v_proj"),
        batch_size=2,
        max_length=48,
        threads=1,
        checkpoint_every=3,
        learning_rate=2e-3,
    )
    folder.mkdir()
    (folder / "spec.json").write_text(spec.to_json())
    return folder


def child(folder: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "inhouse.tuning.trainer", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def kill_after_step(folder: Path, process: subprocess.Popen[bytes], step: int) -> None:
    """SIGKILL the child as soon as it reports `step` (after the checkpoint before it)."""
    deadline = time.monotonic() + 600  # a guard against a hang, not a speed check
    while time.monotonic() < deadline and process.poll() is None:
        if any(e.get("step") == step and e["type"] == "progress" for e in read_events(folder)):
            os.kill(process.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    process.wait(timeout=60)


def test_killed_child_resumes_and_its_adapter_exports(tmp_path: Path) -> None:
    need(TORCH, "torch, transformers and peft are not installed (the tuning extra)")
    folder = write_job(tmp_path / "job", tmp_path / "facts.jsonl")
    first = child(folder)
    kill_after_step(folder, first, 4)
    assert first.returncode == -signal.SIGKILL, first.stderr.read() if first.stderr else ""
    before = read_events(folder)
    assert not (folder / "final").exists()
    assert [p.name for p in (folder / "checkpoints").iterdir()] == ["step-3"]

    second = child(folder)
    _, err = second.communicate(timeout=600)
    assert second.returncode == 0, err.decode()[-2000:]
    events = read_events(folder)[len(before) :]
    start, steps = events[0], [e for e in events if e["type"] == "progress"]
    assert start["type"] == "start" and start["resumed_from"] == 3 and start["total_steps"] == 9
    assert [e["step"] for e in steps] == [4, 5, 6, 7, 8, 9]
    killed = {e["step"]: e for e in before if e["type"] == "progress"}
    assert abs(steps[0]["loss"] - killed[4]["loss"]) < 1e-3  # the same step as uninterrupted
    assert steps[-1]["tokens"] > killed[4]["tokens"] > 0
    first_epoch = [killed[s]["loss"] for s in (1, 2, 3)]
    done = events[-1]
    assert done["type"] == "done" and done["train_loss"] < sum(first_epoch) / 3
    assert done["eval_tokens"] > 0 and done["eval_loss"] < sum(first_epoch) / 3
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["step-3", "step-6"]

    tensors, config = read_peft_adapter(folder / "final")
    assert len(tensors) == 2 * 2 * 30 and config.rank == 4
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" in tensors
    out = export_lora(tensors, config, default_model_path(), tmp_path / "tuned.gguf")
    assert len(gguf.GGUFReader(out).tensors) == 2 * 2 * 30
