"""Model switch benchmark: what a request pays when its model is not loaded.

One in-process server (create_app + uvicorn on a thread) serves three names: the default
`smollm2`, the adapter set `smollm2-tuned` (SmolLM2 + a random LoRA) and `tiny` (a random
8 MB llama that borrows SmolLM2's tokenizer). Requests switch round-robin between them, twice:
under a memory budget that fits only one model (every switch is a cold load) and under one that
fits all (after the first round every request is warm). Each request is a streamed greedy chat
completion through the official `openai` client; it records the time to first token (TTFT) and,
for a cold load, the load seconds the model pool measured. It prints a markdown table and
writes JSON; it is a tool, never part of the test suite. From the repository root:

    .venv/bin/python benchmarks/model_switch_bench.py               # 3 rounds, 1 thread
    .venv/bin/python benchmarks/model_switch_bench.py --rounds 1    # a smoke run

One engine thread by default: on a small shared machine, llama.cpp threads that spin against
each other's cores turn a 30 ms prefill into seconds and drown what is measured here.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import openai
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `tests.model_files`

from inhouse.api.app import create_app
from inhouse.config import load_settings
from inhouse.engine.pool import ModelPool
from inhouse.models.store import ModelStore
from tests.model_files import write_smollm2_lora, write_tiny_llama

DEFAULT_OUT = Path("benchmarks/results/model_switch.json")
MODELS = ("smollm2", "smollm2-tuned", "tiny")
PROMPT = "What is the capital of France?"
MIN_BUDGET_MB = 64  # the smallest budget settings accept: each load unloads every other model
ALL_BUDGET_MB = 8192


@dataclass(frozen=True)
class Sample:
    budget: str
    round: int
    model: str
    cold: bool
    load_s: float | None
    ttft_ms: float
    total_ms: float


@contextmanager
def serving(home: Path, budget_mb: int, args: argparse.Namespace) -> Iterator[tuple[str, Any]]:
    """Serve `home` on a free loopback port; yields the /v1 URL and the app's model pool."""
    settings = load_settings(
        None,
        home=home,
        auth={"enabled": False},
        engine={
            "n_threads": args.threads,
            "kv_cells": args.kv_cells,
            "memory_budget_mb": budget_mb,
        },
    )
    app = create_app(settings)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/v1", app.state.inhouse.pool
    finally:
        server.should_exit = True
        thread.join(60)


def timed_request(client: openai.OpenAI, model: str, max_tokens: int) -> tuple[float, float]:
    """TTFT and total time of one streamed greedy chat completion, in ms."""
    began = time.perf_counter()
    first: float | None = None
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
    )
    for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter()
    end = time.perf_counter()
    return ((first or end) - began) * 1e3, (end - began) * 1e3


def run_budget(home: Path, label: str, budget_mb: int, args: argparse.Namespace) -> list[Sample]:
    samples: list[Sample] = []
    with serving(home, budget_mb, args) as (url, pool):
        assert isinstance(pool, ModelPool)
        client = openai.OpenAI(base_url=url, api_key="none", max_retries=0)
        timed_request(client, "smollm2", 2)  # the default is loaded; warm up its code paths
        for round_no in range(args.rounds):
            for model in MODELS[1:] + MODELS[:1]:  # start away from the loaded default
                before = pool.get_loaded(model)
                ttft, total = timed_request(client, model, args.max_tokens)
                after = pool.get_loaded(model)
                cold = after is not None and after is not before
                load_s = after.load_seconds if cold and after is not None else None
                samples.append(Sample(label, round_no, model, cold, load_s, ttft, total))
    return samples


def make_home(folder: Path) -> Path:
    home = folder / "home"
    store = ModelStore(home)
    store.ensure_default()
    store.import_file(write_tiny_llama(folder / "tiny.gguf"), "tiny")
    store.add_adapter_set("smollm2-tuned", "smollm2", [(write_smollm2_lora(folder / "a.gguf"), 1)])
    return home


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 1) if values else None


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def summarize(samples: list[Sample]) -> list[dict[str, Any]]:
    rows = []
    for budget in dict.fromkeys(s.budget for s in samples):
        for model in MODELS:
            mine = [s for s in samples if s.budget == budget and s.model == model]
            cold = [s for s in mine if s.cold]
            warm = [s for s in mine if not s.cold]
            rows.append(
                {
                    "budget": budget,
                    "model": model,
                    "requests": len(mine),
                    "cold_loads": len(cold),
                    "load_ms": _mean([1e3 * (s.load_s or 0.0) for s in cold]),
                    "ttft_cold_ms": _mean([s.ttft_ms for s in cold]),
                    "ttft_warm_ms": _mean([s.ttft_ms for s in warm]),
                    "total_ms": _mean([s.total_ms for s in mine]),
                }
            )
    return rows


def print_table(
    rows: list[dict[str, Any]], samples: list[Sample], args: argparse.Namespace
) -> None:
    print(
        f"\nmodel switching, {args.rounds} rounds of {', '.join(MODELS)}, "
        f"{args.max_tokens} tokens, kv_cells {args.kv_cells}, {args.threads} threads"
    )
    print("| budget | model | requests | cold loads | load ms | TTFT cold ms | TTFT warm ms |")
    print("|--------|-------|---------:|-----------:|--------:|-------------:|-------------:|")
    for r in rows:
        print(
            f"| {r['budget']} | {r['model']} | {r['requests']} | {r['cold_loads']} | "
            f"{_ms(r['load_ms'])} | {_ms(r['ttft_cold_ms'])} | {_ms(r['ttft_warm_ms'])} |"
        )
    for budget in dict.fromkeys(s.budget for s in samples):
        switched = [s.ttft_ms for s in samples if s.budget == budget and s.round > 0]
        print(f"mean TTFT of a switch after round 1, budget {budget}: {_ms(_mean(switched))} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--kv-cells", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = make_home(Path(tmp))
        samples = run_budget(home, f"fits one ({MIN_BUDGET_MB} MB)", MIN_BUDGET_MB, args)
        samples += run_budget(home, f"fits all ({ALL_BUDGET_MB} MB)", ALL_BUDGET_MB, args)
    rows = summarize(samples)
    print_table(rows, samples, args)
    report = {
        "benchmark": "model_switch",
        "settings": {k: str(v) for k, v in vars(args).items()},
        "cpu_count": os.cpu_count(),
        "summary": rows,
        "samples": [asdict(s) for s in samples],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
