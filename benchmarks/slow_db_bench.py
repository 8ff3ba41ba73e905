"""Slowed-database benchmark (issue 9): do streams already running keep their TPOT while 100
clients arrive and every PostgreSQL round trip is slow?

For each source tree (--tree, repeatable; the default is this checkout) it creates a fresh
PostgreSQL database, a member and an API key with day, month and rpm quotas far out of reach
(the tree's own CLI: every request then authenticates by key and reserves quota in
PostgreSQL), and starts `python -m inhouse serve` on that tree, the same flags for every tree.
The server reaches PostgreSQL through a TCP proxy (db_proxy.py, a child process) that holds
every chunk from PostgreSQL to the server for the current delay: each round trip (key lookup,
reservation, settlement) takes that much longer. Per --delay-ms it starts --streams long
greedy streaming chat completions; once all stream, --baseline-s of their inter-chunk gaps are
the baseline; then --clients concurrent short non-streaming chat requests (the burst); the
streams are cancelled when the last one has answered. Reported per (tree, delay):

  TPOT          the streams' inter-chunk gaps during the burst: p50, p99 and the longest
                (after a stall the chunks generated meanwhile arrive at once, so one long
                gap among many short ones: p50/p99 can hide it, the longest shows it)
  added         p50 / p99 of those minus the same streams' gaps before the burst
  streams %     how much of the burst the streams were still running for
  short         p50 / p99 latency of the burst's requests that got 200
  loop          p99 / max latency of /health, polled every 50 ms during the burst: it needs
                neither database nor engine, so it shows the event loop blocked, apart from
                the engine being slow (the 2 cores are shared with everything else)
  errors        503, 429, other statuses and transport errors, counted apart

Knobs (the defaults run two trees x two delays in about 3-4 minutes on 2 cores): --streams 4,
--stream-tokens 512 (outlive the burst; cut when it ends), --clients 100, --short-tokens 8,
--baseline-s 2, --delay-ms 0,50, --threads 1 (a decode step that waits on no second thread is
steadier on a shared machine), --max-running 16 and --max-queue 256 (the whole burst is
queued, never refused with 503). A tool, never a test. From the repository root, with an
older commit as "before":

    git worktree add --detach /tmp/slowdb_before HEAD~1
    .venv/bin/python benchmarks/slow_db_bench.py --tree /tmp/slowdb_before --tree .
    git worktree remove /tmp/slowdb_before
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
from db_proxy import DelayProxy
from psycopg import sql
from serve_bench import fmt, free_port, markdown_table, percentile, running_server
from sqlalchemy.engine import make_url

DEFAULT_OUT = Path("benchmarks/results/slow_db_bench.json")
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:55432/postgres"
BIG = str(10**9)  # quotas checked and reserved on every request, never reached (int32)
TOPICS = ("the Roman Empire", "the ocean", "the printing press", "volcanoes", "trains")
TIMEOUT_S = 300.0
PROBE_S = 0.05


@dataclass
class Row:
    """The measurements of one (tree, delay)."""

    tree: str
    delay_ms: int
    baseline_gap_p50_ms: float | None
    baseline_gap_p99_ms: float | None
    gap_p50_ms: float | None
    gap_p99_ms: float | None
    gap_max_ms: float | None
    added_p50_ms: float | None
    added_p99_ms: float | None
    short_p50_ms: float | None
    short_p99_ms: float | None
    burst_s: float
    stream_covered: float  # share of the burst the streams were still running for
    loop_baseline_p99_ms: float | None  # /health latency before the burst
    loop_p50_ms: float | None  # /health latency during the burst
    loop_p99_ms: float | None
    loop_max_ms: float | None
    ok: int
    overloaded_503: int
    limited_429: int
    other_errors: dict[str, int]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--tree", type=Path, action="append", help="source tree (repeatable)")
    p.add_argument("--delay-ms", default="0,50", help="proxy delays, comma-separated")
    p.add_argument("--postgres", default=DEFAULT_POSTGRES, help="a database we may create in")
    p.add_argument("--streams", type=int, default=4)
    p.add_argument("--stream-tokens", type=int, default=512)
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--short-tokens", type=int, default=8)
    p.add_argument("--baseline-s", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-running", type=int, default=16)
    p.add_argument("--max-queue", type=int, default=256)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return p


def tree_label(tree: Path) -> str:
    """Short commit, `+dirty` when tracked files differ from it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(tree), *args], capture_output=True, text=True)
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--untracked-files=no")
    return (git("rev-parse", "--short", "HEAD") or tree.name) + ("+dirty" if dirty else "")


@contextlib.contextmanager
def fresh_database(admin_url: str, name: str) -> Iterator[str]:
    """A new database on the server of `admin_url`, dropped afterwards; yields its URL."""
    ident = sql.Identifier(name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))


def via(url: str, port: int) -> str:
    """`url` with its host and port replaced by the proxy's."""
    return make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


def inhouse(tree: Path, store_url: str, *args: str) -> list[str]:
    """The command line of `python -m inhouse ARGS` on `tree`, storing in `store_url`."""
    env = [f"PYTHONPATH={tree / 'src'}", f"INHOUSE_STORE__URL={store_url}"]
    return ["env", *env, sys.executable, "-m", "inhouse", *args]


def member_key(tree: Path, store_url: str, home: Path) -> str:
    """A member's API key with day, month and rpm quotas (the tree's own CLI)."""
    user = ["users", "add", "bench", "--home", str(home)]
    subprocess.run(inhouse(tree, store_url, *user), check=True, capture_output=True)
    key = ["keys", "create", "--user", "bench", "--home", str(home), "--rpm", BIG]
    key += ["--quota-tokens-day", BIG, "--quota-tokens-month", BIG]
    done = subprocess.run(
        inhouse(tree, store_url, *key), check=True, capture_output=True, text=True
    )
    return done.stdout.split()[-1]  # "key_x for bench: ih-..."


def chat(content: str, max_tokens: int, stream: bool) -> dict[str, Any]:
    messages = [{"role": "user", "content": content}]
    body = {"model": "smollm2", "messages": messages, "max_tokens": max_tokens}
    return body | {"temperature": 0.0, "stream": stream}


async def stream_one(client: httpx.AsyncClient, body: dict[str, Any], times: list[float]) -> None:
    """Append the arrival time of every SSE chunk of one streaming request to `times`."""
    async with client.stream("POST", "/v1/chat/completions", json=body) as reply:
        reply.raise_for_status()
        async for line in reply.aiter_lines():
            if line.startswith("data:") and line.strip() != "data: [DONE]":
                times.append(time.perf_counter())


async def short_one(client: httpx.AsyncClient, body: dict[str, Any]) -> tuple[str, float]:
    """(status or exception name, seconds) of one non-streaming request."""
    start = time.perf_counter()
    try:
        reply = await client.post("/v1/chat/completions", json=body)
        status = str(reply.status_code)
    except httpx.HTTPError as exc:
        status = type(exc).__name__
    return status, time.perf_counter() - start


async def all_streaming(streams: list[list[float]], tasks: list[asyncio.Task[None]]) -> None:
    while not all(len(times) >= 2 for times in streams):
        for task in tasks:
            if task.done():
                task.result()  # a stream that failed or ended before it began: raise
        await asyncio.sleep(0.05)


@dataclass
class Burst:
    streams: list[list[float]]  # chunk arrival times per stream
    shorts: list[tuple[str, float]]
    probes: list[tuple[float, float]]  # (answered at, ms) of each /health probe
    baseline_from: float
    start: float
    end: float


async def probe(
    client: httpx.AsyncClient, done: asyncio.Event, out: list[tuple[float, float]]
) -> None:
    """Time /health every PROBE_S until `done`: it needs neither the database nor the
    engine, so its latency is how long the server's event loop is busy elsewhere."""
    while not done.is_set():
        start = time.perf_counter()
        with contextlib.suppress(httpx.HTTPError):
            await client.get("/health")
        end = time.perf_counter()
        out.append((end, (end - start) * 1000))
        await asyncio.sleep(PROBE_S)


async def burst(base: str, key: str, args: argparse.Namespace) -> Burst:
    """Streams first; once all stream, a baseline, then the burst of short requests."""
    limits = httpx.Limits(max_connections=args.clients + args.streams + 8)
    headers = {"Authorization": f"Bearer {key}"}
    short = chat("Say hi in five words.", args.short_tokens, False)
    async with httpx.AsyncClient(
        base_url=base, headers=headers, timeout=TIMEOUT_S, limits=limits
    ) as client:
        await short_one(client, short)  # warm the model, the connections and the pool
        streams: list[list[float]] = [[] for _ in range(args.streams)]
        tasks = [
            asyncio.create_task(stream_one(client, chat(essay(i), args.stream_tokens, True), t))
            for i, t in enumerate(streams)
        ]
        await all_streaming(streams, tasks)
        probes: list[tuple[float, float]] = []
        done = asyncio.Event()
        prober = asyncio.create_task(probe(client, done, probes))
        baseline_from = time.perf_counter()
        await asyncio.sleep(args.baseline_s)
        start = time.perf_counter()
        shorts = await asyncio.gather(*(short_one(client, short) for _ in range(args.clients)))
        end = time.perf_counter()
        done.set()
        await prober
        for task in tasks:
            task.cancel()  # what the streams do after the burst is not measured
        ended = await asyncio.gather(*tasks, return_exceptions=True)
    for outcome in ended:
        if isinstance(outcome, Exception):  # not CancelledError: a stream that failed
            raise outcome
    return Burst(streams, list(shorts), probes, baseline_from, start, end)


def essay(i: int) -> str:
    return f"Write a long, detailed essay about the history of {TOPICS[i % len(TOPICS)]}."


def gaps(streams: list[list[float]], after: float, until: float) -> list[float]:
    """Inter-chunk gaps (ms) that end within (after, until]: a stall that spans `after`
    counts in full."""
    return [
        (b - a) * 1000
        for times in streams
        for a, b in itertools.pairwise(times)
        if after < b <= until
    ]


def summarize(tree: str, delay_ms: int, run: Burst) -> Row:
    baseline = gaps(run.streams, run.baseline_from, run.start)
    during = gaps(run.streams, run.start, run.end)
    latencies = [s * 1000 for status, s in run.shorts if status == "200"]
    statuses = Counter(status for status, _ in run.shorts)
    last = max((times[-1] for times in run.streams), default=run.start)
    loop = [ms for at, ms in run.probes if at > run.start]
    p50, p99 = percentile(during, 50), percentile(during, 99)
    return Row(
        tree=tree,
        delay_ms=delay_ms,
        baseline_gap_p50_ms=percentile(baseline, 50),
        baseline_gap_p99_ms=percentile(baseline, 99),
        gap_p50_ms=p50,
        gap_p99_ms=p99,
        gap_max_ms=max(during, default=None),
        added_p50_ms=minus(p50, percentile(baseline, 50)),
        added_p99_ms=minus(p99, percentile(baseline, 99)),
        short_p50_ms=percentile(latencies, 50),
        short_p99_ms=percentile(latencies, 99),
        burst_s=run.end - run.start,
        stream_covered=max(0.0, (min(last, run.end) - run.start) / max(run.end - run.start, 1e-9)),
        loop_baseline_p99_ms=percentile([ms for at, ms in run.probes if at <= run.start], 99),
        loop_p50_ms=percentile(loop, 50),
        loop_p99_ms=percentile(loop, 99),
        loop_max_ms=max(loop, default=None),
        ok=statuses.pop("200", 0),
        overloaded_503=statuses.pop("503", 0),
        limited_429=statuses.pop("429", 0),
        other_errors=dict(statuses),
    )


def minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def bench_tree(tree: Path, index: int, delays: list[int], args: argparse.Namespace) -> list[Row]:
    """One server on `tree` with a fresh database behind the proxy; one burst per delay."""
    label = tree_label(tree)
    postgres_port = make_url(args.postgres).port or 5432
    with (
        tempfile.TemporaryDirectory() as tmp,
        fresh_database(args.postgres, f"slow_db_bench_{index}") as store_url,
        DelayProxy(postgres_port) as proxy,
    ):
        home, port = Path(tmp), free_port()
        key = member_key(tree, store_url, home)
        serve = ["serve", "--home", str(home), "--port", str(port), "--threads", str(args.threads)]
        serve += ["--max-running", str(args.max_running), "--max-queue", str(args.max_queue)]
        base = f"http://127.0.0.1:{port}"
        rows = []
        with running_server(
            inhouse(tree, via(store_url, proxy.port), *serve), f"{base}/health", home / "log"
        ):
            for delay in delays:
                proxy.delay_ms = delay
                row = summarize(label, delay, asyncio.run(burst(base, key, args)))
                print_row(row)
                rows.append(row)
                proxy.delay_ms = 0
                time.sleep(1.0)  # let the write-behind batch settle the burst
        usage_rows = count_usage(store_url)
    print(f"[{label}] {usage_rows} usage rows written to PostgreSQL", flush=True)
    return rows


def count_usage(store_url: str) -> int:
    """Requests the ledger recorded: proof that governance ran on the database."""
    with psycopg.connect(store_url) as conn:
        found = conn.execute("SELECT count(*) FROM usage").fetchone()
    return int(found[0]) if found else 0


def print_row(row: Row) -> None:
    print(
        f"[{row.tree}] delay {row.delay_ms} ms: gap p50/p99/max "
        f"{fmt(row.gap_p50_ms)}/{fmt(row.gap_p99_ms)}/{fmt(row.gap_max_ms)} ms, "
        f"short p50/p99 {fmt(row.short_p50_ms)}/{fmt(row.short_p99_ms)} ms, "
        f"loop p99 {fmt(row.loop_p99_ms)} ms, {row.ok} ok in {row.burst_s:.1f} s",
        flush=True,
    )


def table(rows: list[Row]) -> str:
    headers = [
        "tree", "delay ms", "TPOT p50", "TPOT p99", "max gap", "added p50", "added p99",
        "short p50", "short p99", "burst s", "streams %", "loop p99", "loop max", "ok",
        "503", "429", "other",
    ]  # fmt: skip
    cells = [
        [
            r.tree, str(r.delay_ms), fmt(r.gap_p50_ms), fmt(r.gap_p99_ms), fmt(r.gap_max_ms),
            fmt(r.added_p50_ms), fmt(r.added_p99_ms), fmt(r.short_p50_ms, 0),
            fmt(r.short_p99_ms, 0), f"{r.burst_s:.1f}", f"{100 * r.stream_covered:.0f}",
            fmt(r.loop_p99_ms, 0), fmt(r.loop_max_ms, 0), str(r.ok), str(r.overloaded_503),
            str(r.limited_429), str(sum(r.other_errors.values())),
        ]
        for r in rows
    ]  # fmt: skip
    return markdown_table(headers, cells)


def main() -> int:
    args = build_parser().parse_args()
    trees = [t.resolve() for t in args.tree or [Path(__file__).resolve().parents[1]]]
    delays = [int(d) for d in args.delay_ms.split(",") if d.strip()]
    started = time.perf_counter()
    rows = [row for i, tree in enumerate(trees) for row in bench_tree(tree, i, delays, args)]
    print("\nAll times in ms unless marked; gaps are the running streams' inter-chunk gaps")
    print("during the burst, `added` is that minus the same streams' gaps before it; `loop`")
    print("is the latency of /health (no database, no engine) during the burst.\n")
    print(table(rows))
    record = {
        "command": sys.argv,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "trees": {tree_label(t): str(t) for t in trees},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "wall_s": time.perf_counter() - started,
        "rows": [asdict(r) for r in rows],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
