"""Stall benchmark (issue 13): how long a normal short chat request takes on an idle server,
and next to each hostile request (costly structured-output schemas, hostile chat templates).

It starts `inhouse serve` (no auth, the default model) in a subprocess, measures the idle
latency of a short greedy chat request, then for each case sends the hostile request and,
half a second later, the normal one. A normal request that gets no answer within
--stall-timeout counts as stalled, and the server is killed (SIGKILL: a frozen engine thread
stops nothing else) and started again for the next case. It prints a table and writes JSON.
A tool, never a test. From the repository root:

    .venv/bin/python benchmarks/stall_bench.py                     # this tree, ~2 minutes
    git archive HEAD | tar -x -C /tmp/before                       # an older tree, to compare
    .venv/bin/python benchmarks/stall_bench.py --src /tmp/before/src --label before
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

HI = [{"role": "user", "content": "Say hi in five words."}]
ASK = [{"role": "user", "content": "Answer in JSON."}]
LOOPING_TEMPLATE = (
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
)
STRING_BOMB_TEMPLATE = "{{ 'ab ' * 30000000 }}"


@dataclass(frozen=True)
class Case:
    name: str
    body: dict[str, Any]  # the hostile chat completion request
    model_template: str | None = None  # a tiny model with this chat template serves it


def schema_case(name: str, schema: dict[str, Any], n: int, max_tokens: int) -> Case:
    body = {
        "model": "smollm2",
        "messages": ASK,
        "max_tokens": max_tokens,
        "n": n,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    }
    return Case(name, body)


def union(n: int) -> dict[str, Any]:
    props = {"x": {"type": "integer"}}
    return {
        "anyOf": [
            {
                "type": "object",
                "properties": {"kind": {"const": f"kind{k}"}, **props},
                "required": ["kind", "x"],
            }
            for k in range(n)
        ]
    }


CASES: list[Case] = [
    Case(  # the floor: any n=8 request shares the engine's steps
        "reference: plain chat, n=8",
        {"model": "smollm2", "messages": ASK, "max_tokens": 16, "n": 8},
    ),
    schema_case(
        "regex (a?){128}a{128}, max_tokens 3",
        {"type": "string", "pattern": "^(a?){128}a{128}$"},
        1,
        3,
    ),
    schema_case(
        "regex (a?){256}a{256}, max_tokens 3",
        {"type": "string", "pattern": "^(a?){256}a{256}$"},
        1,
        3,
    ),
    schema_case("1,990-value enum, n=8", {"enum": [f"value-{i}" for i in range(1990)]}, 8, 16),
    schema_case(
        "1,990 values none alike, n=8", {"enum": [chr(0x4E00 + i) for i in range(1990)]}, 8, 16
    ),
    # the costliest schemas still accepted, at n=8
    schema_case(
        "accepted: a{0,62}a{62}, n=8", {"type": "string", "pattern": "^a{0,62}a{62}$"}, 8, 16
    ),
    schema_case("accepted: union of 40 objects, n=8", union(40), 8, 16),
    schema_case(
        "accepted: 50 optional members, n=8",
        {
            "type": "object",
            "properties": {f"field_{i}": {"type": ["string", "null"]} for i in range(50)},
        },
        8,
        16,
    ),
]
TEMPLATE_CASES: list[Case] = [
    Case("template: nested range(100000) loops", {}, LOOPING_TEMPLATE),
    Case("template: 'ab ' * 30000000", {}, STRING_BOMB_TEMPLATE),
]


@dataclass
class Row:
    case: str
    hostile_status: str
    hostile_s: float | None
    alone_s: float | None  # the normal request just before, on its own
    normal_s: float | None  # the normal request next to the hostile one (None: stalled)
    ratio: float | None  # normal_s / alone_s


def post(base: str, body: dict[str, Any], timeout: float) -> tuple[str, float | None]:
    """(status or 'timeout', seconds) of one chat completion."""
    start = time.perf_counter()
    try:
        r = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=timeout)
    except httpx.TimeoutException:
        return "timeout", None
    except httpx.HTTPError as exc:
        return type(exc).__name__, None
    return str(r.status_code), time.perf_counter() - start


def normal(base: str, timeout: float) -> float | None:
    body = {"model": "smollm2", "messages": HI, "max_tokens": 16, "temperature": 0.0}
    status, seconds = post(base, body, timeout)
    return seconds if status == "200" else None


class Server:
    """`inhouse serve` in a subprocess, on source tree `src`, restartable."""

    def __init__(self, src: Path, home: Path, port: int, threads: int) -> None:
        self.src, self.home, self.port, self.threads = src, home, port, threads
        self.base = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "inhouse.cli", "serve", "--no-auth", "--home", str(self.home)]
        cmd += ["--port", str(self.port), "--threads", str(self.threads)]
        env = {**os.environ, "PYTHONPATH": str(self.src)}
        log = (self.home / "server.log").open("ab")
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base + "/health", timeout=2).status_code == 200:
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.5)
        raise RuntimeError(f"the server did not start; see {self.home / 'server.log'}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)
        self.proc = None


@contextlib.contextmanager
def server(args: argparse.Namespace, home: Path) -> Iterator[Server]:
    s = Server(args.src.resolve(), home, args.port, args.threads)
    s.start()
    try:
        yield s
    finally:
        s.kill()


def run_case(s: Server, case: Case, args: argparse.Namespace) -> Row:
    """The normal request alone; then the hostile one in the background and the normal one
    half a second later (the machine's load drifts: each case has its own baseline)."""
    alone = normal(s.base, args.stall_timeout)
    result: dict[str, Any] = {}

    def hostile() -> None:
        result["status"], result["s"] = post(s.base, case.body, args.stall_timeout)

    thread = threading.Thread(target=hostile, daemon=True)
    thread.start()
    time.sleep(0.5)
    seconds = normal(s.base, args.stall_timeout)
    thread.join(args.stall_timeout)
    status = result.get("status", "timeout")
    if seconds is None:  # stalled: only SIGKILL stops a frozen engine thread
        s.kill()
        s.start()
    ratio = None if seconds is None or alone is None else seconds / alone
    return Row(case.name, status, result.get("s"), alone, seconds, ratio)


def idle_latency(s: Server, rounds: int) -> float:
    normal(s.base, 120)  # warm up
    times = [normal(s.base, 120) for _ in range(rounds)]
    return statistics.median(t for t in times if t is not None)


def template_rows(args: argparse.Namespace, root: Path) -> list[Row]:
    """Hostile-template cases: a tiny model with the template, imported next to the default
    model (the tests' GGUF writer makes it; without it, no rows)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    try:
        from tests.gguf_files import write_model
    except ImportError:
        return []
    home, rows, cases = root / "home-templates", [], []
    home.mkdir()
    env = {**os.environ, "PYTHONPATH": str(args.src.resolve())}
    for i, case in enumerate(TEMPLATE_CASES):
        path = write_model(root / f"hostile-{i}.gguf", template=case.model_template)
        cmd = [sys.executable, "-m", "inhouse.cli", "models", "import", str(path)]
        cmd += ["--name", f"hostile-{i}", "--home", str(home)]
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, timeout=args.stall_timeout)
        except subprocess.TimeoutExpired:
            rows.append(Row(case.name, "import timed out", None, None, None, None))
            continue
        if done.returncode != 0:
            rows.append(Row(case.name, "refused", None, None, None, None))
            continue
        cases.append(Case(case.name, {"model": f"hostile-{i}", "messages": HI, "max_tokens": 4}))
    if cases:
        with server(args, home) as s:
            rows += [run_case(s, case, args) for case in cases]
    return rows


COMPILE_TIMER = """
import json, sys, time
from inhouse.engine.grammar import schema_to_grammar
out = {}
for name, schema in json.loads(sys.stdin.read()).items():
    start = time.perf_counter()
    for i in range(20):  # a new title each time: a schema not seen before
        schema_to_grammar({**schema, "title": f"t{i}"})
    first = (time.perf_counter() - start) / 20 * 1000
    start = time.perf_counter()
    for _ in range(20):
        schema_to_grammar(schema)
    out[name] = [first, (time.perf_counter() - start) / 20 * 1000]
print(json.dumps(out))
"""
NORMAL_SCHEMAS: dict[str, Any] = {
    "user (structured_bench)": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 24},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "role": {"enum": ["admin", "user", "guest"]},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3},
        },
        "required": ["name", "age", "role", "tags"],
    },
    "20 optional fields": {
        "type": "object",
        "properties": {f"field_{i}": {"type": ["string", "null"]} for i in range(20)},
    },
    "300-value enum": {"enum": [f"item-{i}" for i in range(300)]},
    "union of 8 objects": union(8),
}


def compile_ms(src: Path) -> dict[str, list[float]]:
    """Milliseconds schema_to_grammar takes per normal schema on source tree `src`: for a
    schema it has not seen, and for one sent again."""
    env = {**os.environ, "PYTHONPATH": str(src.resolve())}
    done = subprocess.run(
        [sys.executable, "-c", COMPILE_TIMER],
        input=json.dumps(NORMAL_SCHEMAS),
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, list[float]] = json.loads(done.stdout)
    return result


SAMPLING_TIMER = """
import json, sys, time
from inhouse.engine.grammar import schema_to_grammar
from inhouse.engine.runner import LlamaRunner
from inhouse.engine.scheduler import Scheduler
from inhouse.engine.request import GenerationRequest, SamplingParams
from inhouse.engine.core import EngineCore
from inhouse.errors import InvalidSchema
from inhouse.models.default import default_model_path
body = json.loads(sys.stdin.read())
try:
    grammar = None if body["schema"] is None else schema_to_grammar(body["schema"])
except InvalidSchema as exc:
    print(json.dumps({"refused": exc.message}))
    raise SystemExit
runner = LlamaRunner(default_model_path(), "m", kv_cells=4096, n_batch=512, n_seq_max=9,
                     n_threads=body["threads"])
spent = []
sample = runner._sample
def timed(row, chunk):
    start = time.process_time()
    out = sample(row, chunk)
    spent.append(time.process_time() - start)
    return out
runner._sample = timed
events = []
core = EngineCore(runner, Scheduler(kv_cells=4096, max_running=9, n_batch=512, cache_slots=0),
                  events.extend)
try:  # newer trees ask whether special-token text is parsed
    prompt = tuple(runner.tokenize(body["prompt"], add_special=False, parse_special=True))
except TypeError:
    prompt = tuple(runner.tokenize(body["prompt"], add_special=False))
for i in range(body["n"]):
    params = SamplingParams(max_tokens=body["max_tokens"], grammar=grammar, seed=i)
    core.submit(GenerationRequest(str(i), prompt, params))
core.poll(block=False)
while core.scheduler.has_work():
    core.step()
print(json.dumps({"samples": len(spent), "ms_per_sample": 1000 * sum(spent) / max(1, len(spent)),
                  "max_ms": 1000 * max(spent, default=0.0)}))
"""
PROMPT = "<|im_start|>user\\nAnswer in JSON.<|im_end|>\\n<|im_start|>assistant\\n"


def sampling_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """CPU ms per constrained sample, in process (the machine's load barely moves it)."""
    env = {**os.environ, "PYTHONPATH": str(args.src.resolve())}
    rows = []
    for case in CASES:
        response_format = case.body.get("response_format")
        spec = None if response_format is None else response_format["json_schema"]["schema"]
        body = {"schema": spec, "n": case.body["n"], "max_tokens": case.body["max_tokens"]}
        body |= {"prompt": PROMPT, "threads": args.threads}
        try:
            done = subprocess.run(
                [sys.executable, "-c", SAMPLING_TIMER],
                input=json.dumps(body),
                env=env,
                capture_output=True,
                text=True,
                timeout=args.stall_timeout,
            )
            lines = done.stdout.strip().splitlines()
            result = json.loads(lines[-1]) if lines else {"stalled": done.stderr[-200:]}
        except subprocess.TimeoutExpired:
            result = {"stalled": f"no result within {args.stall_timeout:.0f} s"}
        rows.append({"case": case.name, **result})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, default=Path("src"), help="source tree to serve")
    parser.add_argument("--label", default="this tree")
    parser.add_argument("--port", type=int, default=8763)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="idle requests (median)")
    parser.add_argument("--stall-timeout", type=float, default=60.0)
    parser.add_argument("--templates", action="store_true", help="also hostile chat templates")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/stall_bench.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "home").mkdir()
        with server(args, root / "home") as s:
            idle = idle_latency(s, args.rounds)
            rows = [run_case(s, case, args) for case in CASES]
        if args.templates:
            rows += template_rows(args, root)
    print(f"\n{args.label}: normal request on an idle server {idle:.2f} s\n")
    print(f"| {'case':<40} | hostile | hostile s | alone s | next to it s | ratio |")
    print(f"|{'-' * 42}|---------|-----------|---------|--------------|-------|")
    for r in rows:
        hs = "-" if r.hostile_s is None else f"{r.hostile_s:.2f}"
        alone = "-" if r.alone_s is None else f"{r.alone_s:.2f}"
        ns = "stalled" if r.normal_s is None and r.alone_s is not None else "-"
        ns = ns if r.normal_s is None else f"{r.normal_s:.2f}"
        x = "-" if r.ratio is None else f"{r.ratio:.1f}x"
        print(
            f"| {r.case:<40} | {r.hostile_status:>7} | {hs:>9} | {alone:>7} | {ns:>12} | {x:>5} |"
        )
    sampling = sampling_rows(args)
    print("\nCPU per sample (one sequence, one token), in process:")
    for row in sampling:
        what = row.get("refused") or row.get("stalled")
        if what is None:
            what = f"{row['ms_per_sample']:.2f} ms mean, {row['max_ms']:.1f} ms max"
        print(f"  {row['case']:<40} {what[:70]}")
    compiled = compile_ms(args.src)
    print("\nschema -> grammar per request, ms (new schema / sent again):")
    for name, (first, again) in compiled.items():
        print(f"  {name:<40} {first:.2f} / {again:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "compile_ms": compiled,
        "sampling": sampling,
        "label": args.label,
        "src": str(args.src),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "idle_s": idle,
        "rows": [asdict(r) for r in rows],
    }
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
