"""Training tokens/s: inhouse's trainer against a plain transformers + peft loop.

Same model (the default SmolLM2-135M GGUF, dequantized to float32), same chat data, same
settings (LoRA r=16 on all 7 projections, batch 8, max 128 tokens, AdamW, lr 2e-4, seed 0),
same thread count, ~10 steps each. The plain loop is what a user writes first: the chat
template rendered, padded to the longest in the batch, `model(**batch, labels=...)` with
loss on every non-padding token. The trainer (`inhouse.tuning.trainer.model.Trainer` fed
the loop's batches and learning rates) runs on the chat data (the loss, and so the
vocabulary-wide LM head, on assistant tokens only) and, with `--text`, on the same
conversations as text (loss on every token, like the plain loop), which leaves
length-grouped batches as the only difference. The contenders take their steps in turn
(one step each, round robin), so a CPU shared with other work slows them alike. tokens/s
counts non-padding tokens processed per second everywhere. Needs the `inhouse[tuning]` extra.

Run: PYTHONPATH=src:. python benchmarks/tuning_throughput.py [--steps 10] [--threads 2] [--text]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from inhouse.models.default import default_model_path
from inhouse.tuning.trainer.data import encode_all, epoch_batches
from inhouse.tuning.trainer.loop import learning_rate
from inhouse.tuning.trainer.model import Trainer
from inhouse.tuning.trainer.spec import TrainSpec

RESULTS = Path(__file__).parent / "results" / "tuning_throughput.json"
BATCH, MAX_LENGTH, RANK = 8, 128, 16
MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
TOPICS = ["billing", "shipping", "returns", "accounts", "security", "warranty", "support"]
Step = Callable[[int], int]  # takes step i, returns the non-padding tokens it processed


def examples(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """Support-ticket chat examples of varied length (some longer than MAX_LENGTH)."""
    rng = random.Random(seed)
    out = []
    for index in range(count):
        topic = rng.choice(TOPICS)
        question = f"Ticket {index}: I have a question about {topic}. " * rng.randint(1, 3)
        answer = f"Thanks for asking about {topic}; here is what to do. " * rng.randint(1, 8)
        turns = [
            {"role": "user", "content": question.strip()},
            {"role": "assistant", "content": answer.strip()},
        ]
        out.append({"messages": turns})
    return out


def plain_loop(tok: Any, data: list[dict[str, Any]]) -> Step:
    """transformers + peft, written the obvious way."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = default_model_path()
    model: Any = AutoModelForCausalLM.from_pretrained(
        str(base.parent), gguf_file=base.name, dtype=torch.float32
    )
    config = LoraConfig(r=RANK, lora_alpha=32, target_modules=list(MODULES))
    model = get_peft_model(model, config)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    texts = [tok.apply_chat_template(e["messages"], tokenize=False) for e in data]
    random.Random(0).shuffle(texts)
    model.train()

    def step(index: int) -> int:
        chunk = texts[index * BATCH : (index + 1) * BATCH]
        batch = tok(
            chunk,
            padding=True,
            truncation=True,
            max_length=MAX_LENGTH,
            return_tensors="pt",
            add_special_tokens=False,
        )
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return int(batch["attention_mask"].sum())

    return step


def inhouse_trainer(
    data: list[dict[str, Any]], steps: int, threads: int, kind: str
) -> tuple[Step, Any]:
    """inhouse's Trainer on the batches and learning rates its loop would use; its tokenizer."""
    spec = TrainSpec(
        base_gguf=str(default_model_path()),
        train_file="-",
        eval_file=None,
        format=kind,
        epochs=1,
        max_memory_mb=None,
        rank=RANK,
        batch_size=BATCH,
        max_length=MAX_LENGTH,
        threads=threads,
    )
    trainer = Trainer(spec)
    encoded, _ = encode_all(trainer.tokenizer, data, MAX_LENGTH)
    batches = epoch_batches([len(e.ids) for e in encoded], BATCH, spec.seed, 0)

    def step(index: int) -> int:
        rate = learning_rate(index, steps, spec.learning_rate)
        return trainer.step([encoded[i] for i in batches[index]], rate, index)[1]

    return step, trainer.tokenizer


def race(contenders: dict[str, Step], steps: int) -> dict[str, dict[str, float]]:
    """Round robin, one step each; per contender: steps, tokens, seconds, tokens/s."""
    tokens = dict.fromkeys(contenders, 0)
    seconds = dict.fromkeys(contenders, 0.0)
    for index in range(steps):
        for name, step in contenders.items():
            started = time.perf_counter()
            tokens[name] += step(index)
            seconds[name] += time.perf_counter() - started
    return {
        name: {
            "steps": steps,
            "tokens": tokens[name],
            "seconds": round(seconds[name], 2),
            "tokens_per_s": round(tokens[name] / seconds[name], 1),
        }
        for name in contenders
    }


def measure(steps: int, threads: int, text: bool = False) -> dict[str, dict[str, float]]:
    """The race on `steps` batches of the reference data: each loop's tokens/s."""
    torch.set_num_threads(threads)
    data = examples(steps * BATCH)
    ours, tokenizer = inhouse_trainer(data, steps, threads, "chat")
    contenders = {"plain transformers + peft": plain_loop(tokenizer, data), "inhouse trainer": ours}
    if text:
        rendered = [
            {"text": tokenizer.apply_chat_template(e["messages"], tokenize=False)} for e in data
        ]
        contenders["inhouse trainer, text"] = inhouse_trainer(rendered, steps, threads, "text")[0]
    return race(contenders, steps)


def print_rows(rows: dict[str, dict[str, float]]) -> None:
    print(f"{'loop':28} {'steps':>5} {'tokens':>7} {'seconds':>8} {'tokens/s':>9}")
    for name, row in rows.items():
        print(
            f"{name:28} {row['steps']:>5} {row['tokens']:>7} {row['seconds']:>8.1f} "
            f"{row['tokens_per_s']:>9.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--text", action="store_true", help="also the trainer on text examples")
    args = parser.parse_args()
    rows = measure(args.steps, args.threads, args.text)
    print_rows(rows)
    setting = {
        "rank": RANK,
        "modules": len(MODULES),
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
