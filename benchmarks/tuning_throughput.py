"""Training tokens/s: inhouse's trainer against a plain transformers + peft loop.

Same model (the default SmolLM2-135M GGUF, dequantized to float32), same chat data, same
settings (LoRA r=16 on all 7 projections, batch 8, max 128 tokens, AdamW, lr 2e-4, seed 0),
same thread count, ~10 steps each. The plain loop is what a user writes first: the chat
template rendered, padded to the longest in the batch, `model(**batch, labels=...)` with
loss on every non-padding token. The trainer runs twice: on the chat data (the loss, and so
the vocabulary-wide LM head, on assistant tokens only) and on the same conversations as
text (loss on every token, like the plain loop), which leaves length-grouped batches as the
only difference. tokens/s counts non-padding tokens processed per second everywhere. The
trainer runs in this process through `loop.run` (no nice(), so all get the same priority).
Needs the `inhouse[tuning]` extra.

Run: PYTHONPATH=src:. python benchmarks/tuning_throughput.py [--steps 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from inhouse.models.default import default_model_path
from inhouse.tuning.trainer.loop import run
from inhouse.tuning.trainer.progress import read_events
from inhouse.tuning.trainer.spec import TrainSpec

RESULTS = Path(__file__).parent / "results" / "tuning_throughput.json"
BATCH, MAX_LENGTH, RANK = 8, 128, 16
TOPICS = ["billing", "shipping", "returns", "accounts", "security", "warranty", "support"]


def examples(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """Support-ticket chat examples of varied length (some longer than MAX_LENGTH)."""
    rng = random.Random(seed)
    out = []
    for index in range(count):
        topic = rng.choice(TOPICS)
        question = f"Ticket {index}: I have a question about {topic}. " * rng.randint(1, 3)
        answer = f"Thanks for asking about {topic}; here is what to do. " * rng.randint(1, 8)
        out.append(
            {
                "messages": [
                    {"role": "user", "content": question.strip()},
                    {"role": "assistant", "content": answer.strip()},
                ]
            }
        )
    return out


def plain_loop(data: list[dict[str, Any]], steps: int, threads: int) -> dict[str, float]:
    """transformers + peft, written the obvious way."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    base = default_model_path()
    tok = AutoTokenizer.from_pretrained(str(base.parent), gguf_file=base.name)
    model: Any = AutoModelForCausalLM.from_pretrained(
        str(base.parent), gguf_file=base.name, dtype=torch.float32
    )
    modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(model, LoraConfig(r=RANK, lora_alpha=32, target_modules=modules))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    texts = [tok.apply_chat_template(e["messages"], tokenize=False) for e in data]
    random.Random(0).shuffle(texts)
    model.train()
    tokens, started = 0, time.perf_counter()
    for step in range(steps):
        chunk = texts[step * BATCH : (step + 1) * BATCH]
        batch = tok(
            chunk,
            padding=True,
            truncation=True,
            max_length=MAX_LENGTH,
            return_tensors="pt",
            add_special_tokens=False,
        )
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        tokens += int(batch["attention_mask"].sum())
    seconds = time.perf_counter() - started
    return {"steps": steps, "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds}


def as_text(data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same conversations rendered by the chat template, as text examples (loss on all)."""
    from transformers import AutoTokenizer

    base = default_model_path()
    tok = AutoTokenizer.from_pretrained(str(base.parent), gguf_file=base.name)
    return [{"text": tok.apply_chat_template(e["messages"], tokenize=False)} for e in data]


def inhouse_trainer(
    data: list[dict[str, Any]], steps: int, threads: int, kind: str = "chat"
) -> dict[str, float]:
    """inhouse.tuning.trainer's loop on the same examples (one epoch of `steps` batches)."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        train = root / "train.jsonl"
        train.write_text("".join(json.dumps(e) + "\n" for e in data))
        job = root / "job"
        job.mkdir()
        spec = TrainSpec(
            base_gguf=str(default_model_path()),
            train_file=str(train),
            eval_file=None,
            format=kind,
            epochs=1,
            max_memory_mb=None,
            rank=RANK,
            batch_size=BATCH,
            max_length=MAX_LENGTH,
            threads=threads,
            checkpoint_every=10_000,
        )
        (job / "spec.json").write_text(spec.to_json())
        run(job)
        progress = [e for e in read_events(job) if e["type"] == "progress"]
    last = progress[-1]
    seconds = last["tokens"] / last["tokens_per_s"]
    return {
        "steps": last["step"],
        "tokens": last["tokens"],
        "seconds": seconds,
        "tokens_per_s": last["tokens_per_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    data = examples(args.steps * BATCH)
    rows = {
        "plain transformers + peft": plain_loop(data, args.steps, args.threads),
        "inhouse trainer": inhouse_trainer(data, args.steps, args.threads),
        "inhouse trainer, text": inhouse_trainer(as_text(data), args.steps, args.threads, "text"),
    }
    print(f"{'loop':28} {'steps':>5} {'tokens':>7} {'seconds':>8} {'tokens/s':>9}")
    for name, row in rows.items():
        print(
            f"{name:28} {row['steps']:>5} {row['tokens']:>7} {row['seconds']:>8.1f} "
            f"{row['tokens_per_s']:>9.1f}"
        )
    setting = {
        "rank": RANK,
        "modules": 7,
        "batch": BATCH,
        "max_length": MAX_LENGTH,
        "threads": args.threads,
        "steps": args.steps,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"setting": setting, "results": rows}, indent=2) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
