"""Tuning benchmark, side by side in one run on the default model (SmolLM2-135M):

1. training tokens/s: inhouse's trainer against a plain transformers + peft loop on the same
   data and settings (`tuning_throughput.py`: LoRA r=16 on all 7 projections, batch 8 x 128,
   one step of each in turn, so that load on the machine slows them alike);
2. the demonstration: facts about a made-up company (`tuning_demo_data.py`) fine-tuned through
   a real `inhouse serve` with the official `openai` client (files, fine_tuning.jobs), then
   each held-out paraphrased question asked of the base and of the tuned model through `/v1`
   (temperature 0): how many answers hold the fact, for each;
3. the time from `jobs.create` to the tuned model's first answer through `/v1`, and its parts.

Prints tables and writes benchmarks/results/tuning_bench.json. Needs the `inhouse[tuning]`
extra. Run: PYTHONPATH=src:. python benchmarks/tuning_bench.py [--epochs 8] [--steps 10]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import tuning_demo_data as demo
import tuning_throughput as throughput

RESULTS = Path(__file__).parent / "results" / "tuning_bench.json"
BASE = "smollm2"


class Server:
    """`inhouse serve` in a child process on a fresh home, training queued jobs itself."""

    def __init__(self, home: Path, threads: int) -> None:
        self.port = _free_port()
        env = os.environ | {
            "INHOUSE_TUNING__RUN_JOBS": "true",
            "INHOUSE_TUNING__THREADS": str(threads),
        }
        command = [sys.executable, "-m", "inhouse", "serve", "--home", str(home)]
        self.proc = subprocess.Popen(
            [*command, "--port", str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.port}"
        self._wait_healthy()
        match = re.search(r"admin key (ih-\S+)", "".join(self.output))
        assert match, "".join(self.output)
        self.key = match.group(1)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError("inhouse serve did not start:\n" + "".join(self.output))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ask(client: openai.OpenAI, model: str, question: str) -> str:
    reply = client.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": demo.SYSTEM},
            {"role": "user", "content": question},
        ],
        temperature=0,
        max_tokens=32,
    )
    return reply.choices[0].message.content or ""


def exact_match(client: openai.OpenAI, model: str, held_out: bool) -> dict[str, Any]:
    """How many answers hold their fact's key, over every fact (held-out or trained wording)."""
    right, answers = 0, []
    for fact in demo.FACTS:
        question = fact.held_out if held_out else fact.train[0]
        answer = ask(client, model, question)
        right += demo.is_right(answer, fact)
        answers.append({"question": question, "answer": answer, "key": fact.key})
    return {"right": right, "of": len(demo.FACTS), "answers": answers}


def demonstration(epochs: int, threads: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        server = Server(root / "home", threads)
        try:
            return _demonstrate(server, root, epochs)
        finally:
            server.stop()


def _demonstrate(server: Server, root: Path, epochs: int) -> dict[str, Any]:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=server.key, max_retries=0)
    train = demo.write_jsonl(root / "train.jsonl", demo.train_examples())
    held = demo.write_jsonl(root / "held_out.jsonl", demo.held_out_examples())
    train_file = client.files.create(file=train.open("rb"), purpose="fine-tune")
    held_file = client.files.create(file=held.open("rb"), purpose="fine-tune")
    base_held, base_trained = exact_match(client, BASE, True), exact_match(client, BASE, False)
    started = time.perf_counter()
    job = client.fine_tuning.jobs.create(
        model=BASE,
        training_file=train_file.id,
        validation_file=held_file.id,
        suffix="brindlewood",
        hyperparameters={"n_epochs": epochs, "batch_size": 8, "learning_rate_multiplier": 5},
        extra_body={"lora": {"rank": 16, "max_length": 96}, "scorer": "contains"},
    )
    while job.status not in ("succeeded", "failed", "cancelled"):
        time.sleep(1)
        job = client.fine_tuning.jobs.retrieve(job.id)
    succeeded = time.perf_counter()
    if job.status != "succeeded":
        raise RuntimeError(f"the job {job.status}: {job.error}")
    model = job.fine_tuned_model or ""
    ask(client, model, demo.FACTS[0].held_out)
    answered = time.perf_counter()
    extra = job.model_extra or {}
    return {
        "examples": {"train": len(demo.train_examples()), "held_out": len(demo.FACTS)},
        "epochs": epochs,
        "trained_tokens": job.trained_tokens,
        "train_seconds": extra.get("train_seconds"),
        "tokens_per_s": (extra.get("progress") or {}).get("tokens_per_s"),
        "start_to_succeeded_s": succeeded - started,
        "start_to_first_answer_s": answered - started,
        "evaluation": extra.get("evaluation"),
        "torch_eval_loss": extra.get("torch_eval_loss"),
        "base": {"held_out": base_held, "trained": base_trained},
        "tuned": {
            "held_out": exact_match(client, model, True),
            "trained": exact_match(client, model, False),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="throughput steps per loop")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {"threads": args.threads}
    if not args.skip_throughput:
        results["throughput"] = throughput.measure(args.steps, args.threads, text=True)
        throughput.print_rows(results["throughput"])
    shown = demonstration(args.epochs, args.threads)
    results["demonstration"] = shown
    print()
    print(f"{'model':22} {'held-out right':>15} {'trained right':>14}")
    for side, name in (("base", BASE), ("tuned", "smollm2-brindlewood")):
        numbers = shown[side]
        print(
            f"{name:22} {numbers['held_out']['right']:>9}/{numbers['held_out']['of']:<5} "
            f"{numbers['trained']['right']:>8}/{numbers['trained']['of']:<5}"
        )
    evaluation = shown["evaluation"] or {}
    print()
    print(
        f"gate: base loss {evaluation.get('base', {}).get('loss')}, tuned loss "
        f"{evaluation.get('tuned', {}).get('loss')}, torch loss {shown['torch_eval_loss']}, "
        f"passed {evaluation.get('passed')}"
    )
    print(
        f"{shown['trained_tokens']} tokens trained in {shown['train_seconds']} s; "
        f"jobs.create -> succeeded {shown['start_to_succeeded_s']:.1f} s, "
        f"-> first answer of the tuned model {shown['start_to_first_answer_s']:.1f} s"
    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
