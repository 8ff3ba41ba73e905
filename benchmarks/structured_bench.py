"""Structured-output benchmark: decode speed with and without a grammar, in process.

The same chat prompts run greedy through the real engine (EngineCore + Scheduler +
LlamaRunner on the default model) three ways: free text, `json_object` (any JSON object) and
`json_schema` (a small nested schema). It prints tok/s per mode, how many answers ended on
their own and how many validate, and writes everything as JSON. A tool, never a test.

    .venv/bin/python benchmarks/structured_bench.py            # about half a minute
    .venv/bin/python benchmarks/structured_bench.py --concurrency 4 --max-tokens 64
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from inhouse.engine.core import EngineCore
from inhouse.engine.grammar import (
    JSON_OBJECT_GRAMMAR,
    InvalidOutput,
    schema_to_grammar,
    validate_output,
)
from inhouse.engine.request import FinishReason, GenerationRequest, SamplingParams, TokenEvent
from inhouse.engine.runner import LlamaRunner
from inhouse.engine.scheduler import Scheduler, StepPlan
from inhouse.models.default import default_model_path

CHAT = (
    "<|im_start|>system\nYou answer in JSON.<|im_end|>\n"
    "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
)
PROMPTS = (
    "Describe a user named Alice who is 30.",
    "Make up an admin user.",
    "Bob is 45 and lives in Berlin.",
    "Create a guest account for a visitor from Paris.",
)
SCHEMA: dict[str, Any] = {
    "$defs": {
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 24}},
            "required": ["city"],
        }
    },
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "role": {"enum": ["admin", "user", "guest"]},
        "address": {"$ref": "#/$defs/address"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3},
    },
    "required": ["name", "age", "role", "address", "tags"],
}
KV_CELLS = 4096
DEFAULT_OUT = Path("benchmarks/results/structured_bench.json")


@dataclass
class ModeResult:
    mode: str
    requests: int
    completion_tokens: int
    seconds: float
    tok_per_s: float
    stopped: int  # ended on their own (EOS), not at max_tokens
    valid: int  # parse (and validate against the schema, for json_schema)


@dataclass
class Output:
    text: str
    stopped: bool
    tokens: int


def run_all(runner: LlamaRunner, grammar: str | None, args: argparse.Namespace) -> list[Output]:
    """Generate every prompt, `concurrency` at a time, through the engine's step loop."""
    events: list[TokenEvent] = []
    runner.execute(StepPlan(clear_slots=list(range(args.concurrency))))
    scheduler = Scheduler(
        kv_cells=KV_CELLS, max_running=args.concurrency, n_batch=256, cache_slots=0
    )
    core = EngineCore(runner, scheduler, events.extend)
    params = SamplingParams(max_tokens=args.max_tokens, temperature=0.0, grammar=grammar)
    for i, prompt in enumerate(PROMPTS):
        tokens = tuple(runner.tokenize(CHAT.format(prompt), add_special=False, parse_special=True))
        core.submit(GenerationRequest(str(i), tokens, params))
    core.poll(block=False)
    while scheduler.has_work():
        core.step()
    finals = {e.request_id: e for e in events if e.finish_reason is not None}
    return [
        Output(
            "".join(e.text for e in events if e.request_id == str(i)),
            finals[str(i)].finish_reason is FinishReason.STOP,
            finals[str(i)].completion_tokens,
        )
        for i in range(len(PROMPTS))
    ]


def measure(runner: LlamaRunner, mode: str, args: argparse.Namespace) -> ModeResult:
    grammar = {"free": None, "json_object": JSON_OBJECT_GRAMMAR}.get(mode)
    if mode == "json_schema":
        grammar = schema_to_grammar(SCHEMA)
    start = time.perf_counter()
    outputs = run_all(runner, grammar, args)
    seconds = time.perf_counter() - start
    tokens = sum(o.tokens for o in outputs)
    return ModeResult(
        mode=mode,
        requests=len(outputs),
        completion_tokens=tokens,
        seconds=round(seconds, 3),
        tok_per_s=round(tokens / seconds, 1),
        stopped=sum(o.stopped for o in outputs),
        valid=sum(_valid(o.text, mode) for o in outputs),
    )


def _valid(text: str, mode: str) -> bool:
    try:
        validate_output(text, SCHEMA if mode == "json_schema" else None)
    except InvalidOutput:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    runner = LlamaRunner(
        default_model_path(),
        "smollm2",
        kv_cells=KV_CELLS,
        n_batch=256,
        n_seq_max=args.concurrency,
        n_threads=args.threads,
    )
    try:
        measure(runner, "free", argparse.Namespace(**{**vars(args), "max_tokens": 4}))  # warm-up
        results = [measure(runner, mode, args) for mode in ("free", "json_object", "json_schema")]
    finally:
        runner.close()
    base = results[0].tok_per_s
    print(f"\nstructured output, greedy, {len(PROMPTS)} prompts, concurrency {args.concurrency}")
    print("| mode        | tokens | seconds | tok/s | vs free | ended (EOS) | valid |")
    print("|-------------|-------:|--------:|------:|--------:|------------:|------:|")
    for r in results:
        print(
            f"| {r.mode:<11} | {r.completion_tokens:>6} | {r.seconds:>7.2f} | {r.tok_per_s:>5.1f}"
            f" | {r.tok_per_s / base:>6.2f}x | {r.stopped:>5}/{r.requests:<5} |"
            f" {r.valid:>2}/{r.requests:<2} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "structured_bench",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "settings": {k: str(v) for k, v in vars(args).items()},
        "schema": SCHEMA,
        "results": [asdict(r) for r in results],
    }
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
