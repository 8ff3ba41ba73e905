"""Governance overhead: auth + quota + usage ledger + audit per request, side by side.

One process serves the same fake model (tests/fakes.FakeRunner: no llama.cpp, so the model's
own time does not drown a millisecond) in several configurations, alternating rounds; the
client runs in a second process:

  off        auth off, governance off (no key check, no quota, no usage row, no audit)
  auth       bearer key checked against the store; no quota, usage or audit
  governed   key + quotas (none; a key's day + rpm; or day, month and rpm on key, user and
             group) + usage row + audit entry

It reports p50/p99 latency of sequential requests and the added latency against `off`,
admission throughput with 100 concurrent clients, and audit append/verify rates. With
--postgres URL the governed configuration also runs on PostgreSQL. It prints markdown tables
and writes JSON; it is a tool, never part of the test suite. From the repository root:

    .venv/bin/python benchmarks/governance_bench.py
    .venv/bin/python benchmarks/governance_bench.py --postgres postgresql://postgres@127.0.0.1:55432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inhouse.api.app import create_app
from inhouse.audit.check import verify
from inhouse.audit.trail import AuditTrail, load_audit_key, open_trail
from inhouse.auth.bootstrap import ensure_admin
from inhouse.auth.directory import Directory
from inhouse.auth.limits import LimitsUpdate
from inhouse.config import load_settings
from inhouse.engine.client import AsyncEngine
from inhouse.engine.scheduler import Scheduler
from inhouse.models.resolver import SingleModel
from inhouse.store.db import open_database
from tests.fakes import FakeRunner

DEFAULT_OUT = Path("benchmarks/results/governance_bench.json")
BODY = {"model": "fake", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
BIG = 10**12  # quotas that are checked and counted on every request, never reached


@dataclass
class Target:
    name: str
    url: str
    key: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def engine() -> AsyncEngine:
    runner = FakeRunner()
    return AsyncEngine(
        runner,
        Scheduler(kv_cells=runner.kv_cells, max_running=16, n_batch=512, cache_slots=0),
        max_queue=512,
    )


def governed_key(home: Path, store_url: str, quotas: str = "all") -> str:
    """A member's key; quotas "all": day/month/rpm on key, user and group (9 counters);
    "key": a daily budget and an rpm on the key (2 counters); "none": no quota."""
    settings = load_settings(None, home=home, store={"url": store_url})
    db = open_database(settings.database_url())
    audit = open_trail(settings, db)
    ensure_admin(db, audit)
    everything = LimitsUpdate(BIG, BIG, 10**9)
    with db.write() as session:
        directory = Directory(session, audit, "bench")
        directory.add_group("bench")
        directory.add_user("bench-user", groups=["bench"])
        if quotas == "all":
            directory.update_group("bench", everything)
            directory.update_user("bench-user", limits=everything)
        key_limits = {
            "all": everything,
            "key": LimitsUpdate(BIG, None, 10**9),
            "none": LimitsUpdate(),
        }[quotas]
        _, secret = directory.create_key("bench-user", limits=key_limits)
    db.close()
    return secret


@contextmanager
def serving(
    name: str, *, auth: bool, governed: bool, store_url: str = "", quotas: str = "all"
) -> Iterator[Target]:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        key = governed_key(home, store_url, quotas) if auth else "none"
        settings = load_settings(None, home=home, auth={"enabled": auth}, store={"url": store_url})
        app = create_app(
            settings,
            resolver=SingleModel("fake", Path("/dev/null")),
            build=lambda spec: engine(),
            governed=governed,
        )
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=port,
                log_level="warning",
                loop="asyncio",
                proxy_headers=False,
                timeout_keep_alive=60,
            )
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        try:
            yield Target(name, f"http://127.0.0.1:{port}", key)
        finally:
            server.should_exit = True
            thread.join(30)


def sequential(target: Target, requests: int) -> list[float]:
    """Client-side milliseconds of `requests` one-token chat completions, one at a time."""
    headers = {"Authorization": f"Bearer {target.key}"}
    times: list[float] = []
    with httpx.Client(base_url=target.url, headers=headers, timeout=30) as client:
        for _ in range(10):  # warm the connection, the engine and the store's caches
            client.post("/v1/chat/completions", json=BODY).raise_for_status()
        for _ in range(requests):
            start = time.perf_counter()
            client.post("/v1/chat/completions", json=BODY).raise_for_status()
            times.append((time.perf_counter() - start) * 1000)
    return times


async def concurrent(target: Target, clients: int, per_client: int) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {target.key}"}
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(
        base_url=target.url, headers=headers, timeout=120, limits=limits
    ) as client:
        failures = 0

        async def one_client() -> None:
            nonlocal failures
            for _ in range(per_client):
                try:
                    reply = await client.post("/v1/chat/completions", json=BODY)
                    failures += reply.status_code != 200
                except httpx.TransportError:
                    failures += 1

        start = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.perf_counter() - start
    return {"requests_per_s": clients * per_client / elapsed, "failed": failures}


def run_concurrent(target: Target, clients: int, per_client: int) -> dict[str, float]:
    return asyncio.run(concurrent(target, clients, per_client))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def audit_rates(store_url: str, entries: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(store_url or f"sqlite:///{tmp}/audit.db")
        trail = AuditTrail(load_audit_key(Path(tmp) / "audit.key"))
        trail.ensure_head(db)
        detail = {"request_id": uuid.uuid4().hex, "model": "fake", "prompt_tokens": 12}
        start = time.perf_counter()
        for _ in range(entries // 500):
            with db.write() as session:
                for _ in range(500):
                    trail.record(session, "user:bench key_x", "api.request", "chat", detail)
        appended = time.perf_counter() - start
        start = time.perf_counter()
        result = verify(db, load_audit_key(Path(tmp) / "audit.key"))
        verified = time.perf_counter() - start
        db.close()
        assert result.ok, result.problem
        return {
            "entries": result.entries,
            "append_per_s": result.entries / appended,
            "verify_per_s": result.entries / verified,
        }


@contextmanager
def postgres_schema(url: str) -> Iterator[str]:
    from sqlalchemy import create_engine, text

    schema = "bench_" + uuid.uuid4().hex[:12]
    admin = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="sequential requests per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--per-client", type=int, default=10)
    parser.add_argument("--audit-entries", type=int, default=20_000)
    parser.add_argument("--postgres", default="", help="PostgreSQL URL for the governed config")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    configs: list[tuple[str, dict[str, Any]]] = [
        ("off", {"auth": False, "governed": False}),
        ("auth", {"auth": True, "governed": False}),
        ("governed, no quota", {"auth": True, "governed": True, "quotas": "none"}),
        ("governed, key quota (2 counters)", {"auth": True, "governed": True, "quotas": "key"}),
        ("governed, all quotas (9 counters)", {"auth": True, "governed": True}),
    ]
    latencies: dict[str, list[float]] = {name: [] for name, _ in configs}
    throughput: dict[str, dict[str, float]] = {}
    with contextlib_exit_stack() as stack:
        # the client runs in its own process, as real clients do: it must not share the
        # server's interpreter lock and inflate what is measured
        client = stack.enter_context(multiprocessing.get_context("spawn").Pool(1))
        if args.postgres:
            pg = stack.enter_context(postgres_schema(args.postgres))
            pg_key = stack.enter_context(postgres_schema(args.postgres))
            for name, options in (
                ("PostgreSQL, key quota (2 counters)", {"quotas": "key", "store_url": pg_key}),
                ("PostgreSQL, all quotas (9 counters)", {"store_url": pg}),
            ):
                configs.append((name, {"auth": True, "governed": True, **options}))
                latencies[name] = []
        targets = [stack.enter_context(serving(name, **options)) for name, options in configs]
        for round_ in range(args.rounds):
            for target in targets if round_ % 2 == 0 else reversed(targets):
                latencies[target.name] += client.apply(sequential, (target, args.requests))
        for target in targets:
            throughput[target.name] = client.apply(
                run_concurrent, (target, args.clients, args.per_client)
            )
    audit = {"SQLite": audit_rates("", args.audit_entries)}
    if args.postgres:
        with postgres_schema(args.postgres) as pg:
            audit["PostgreSQL"] = audit_rates(pg, args.audit_entries)
    report(args, latencies, throughput, audit)


def contextlib_exit_stack() -> Any:
    from contextlib import ExitStack

    return ExitStack()


def report(
    args: argparse.Namespace,
    latencies: dict[str, list[float]],
    throughput: dict[str, dict[str, float]],
    audit: dict[str, dict[str, float]],
) -> None:
    base50 = statistics.median(latencies["off"])
    base99 = percentile(latencies["off"], 0.99)
    rows = []
    print(f"\n{args.rounds} rounds x {args.requests} sequential one-token chat completions")
    print(
        f"| config | p50 ms | p99 ms | added p50 ms | added p99 ms "
        f"| req/s at {args.clients} clients | failed |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, values in latencies.items():
        p50, p99 = statistics.median(values), percentile(values, 0.99)
        rows.append(
            {
                "config": name,
                "p50_ms": p50,
                "p99_ms": p99,
                "added_p50_ms": p50 - base50,
                "added_p99_ms": p99 - base99,
                **throughput[name],
            }
        )
        print(
            f"| {name} | {p50:.2f} | {p99:.2f} | {p50 - base50:+.2f} | {p99 - base99:+.2f} "
            f"| {throughput[name]['requests_per_s']:.0f} | {throughput[name]['failed']:.0f} |"
        )
    print("\n| audit store | entries | append entries/s | verify entries/s |")
    print("|---|---:|---:|---:|")
    for store, rates in audit.items():
        print(
            f"| {store} | {rates['entries']:.0f} | {rates['append_per_s']:.0f} "
            f"| {rates['verify_per_s']:.0f} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"args": {k: str(v) for k, v in vars(args).items()}, "latency": rows, "audit": audit},
            indent=2,
        )
    )
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
