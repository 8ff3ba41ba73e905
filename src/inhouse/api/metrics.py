"""Prometheus metrics of one app: requests, tokens, queue depth, running sequences, latencies."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from inhouse.engine.pool import ModelPool
from inhouse.engine.request import TokenEvent

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28)


class EngineCollector(Collector):
    """Reads the loaded engines' live counters at scrape time, labelled by model."""

    def __init__(self, pool: ModelPool) -> None:
        self.pool = pool

    def collect(self) -> Iterator[Metric]:
        model = ["model"]
        queue = GaugeMetricFamily(
            "inhouse_queue_depth", "Requests waiting for a sequence slot", labels=model
        )
        running = GaugeMetricFamily(
            "inhouse_running_sequences", "Sequences decoding in the batch", labels=model
        )
        alive = GaugeMetricFamily(
            "inhouse_engine_alive", "1 while the engine thread runs", labels=model
        )
        steps = CounterMetricFamily("inhouse_engine_steps", "Decode steps run", labels=model)
        preempted = CounterMetricFamily(
            "inhouse_engine_preemptions", "Sequences preempted for KV room", labels=model
        )
        for loaded in self.pool.loaded:
            stats, name = loaded.engine.stats(), [loaded.spec.name]
            queue.add_metric(name, stats.waiting)
            running.add_metric(name, stats.running)
            alive.add_metric(name, int(stats.alive))
            steps.add_metric(name, stats.steps)
            preempted.add_metric(name, stats.preemptions)
        yield from (queue, running, alive, steps, preempted)


class Metrics:
    def __init__(self, pool: ModelPool) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "inhouse_requests", "Requests answered", ["endpoint", "status"], registry=self.registry
        )
        self.tokens = Counter(
            "inhouse_tokens", "Tokens processed", ["kind"], registry=self.registry
        )
        self.ttft = Histogram(
            "inhouse_time_to_first_token_seconds",
            "From request to first generated token",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tpot = Histogram(
            "inhouse_time_per_output_token_seconds",
            "Mean time between output tokens of a request",
            buckets=TOKEN_BUCKETS,
            registry=self.registry,
        )
        self.duration = Histogram(
            "inhouse_request_duration_seconds",
            "From request to last token",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(EngineCollector(pool))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def track(self, endpoint: str) -> RequestTracker:
        return RequestTracker(self, endpoint)


class RequestTracker:
    """Times one request's events into the histograms."""

    def __init__(self, metrics: Metrics, endpoint: str) -> None:
        self.metrics = metrics
        self.endpoint = endpoint
        self.start = time.perf_counter()
        self.first: float | None = None

    def on_event(self, event: TokenEvent) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
            self.metrics.ttft.observe(now - self.start)
        if event.finish_reason is None:
            return
        self.metrics.tokens.labels("prompt").inc(event.prompt_tokens)
        self.metrics.tokens.labels("completion").inc(event.completion_tokens)
        self.metrics.tokens.labels("cached").inc(event.cached_tokens)
        if event.completion_tokens > 1:
            self.metrics.tpot.observe((now - self.first) / (event.completion_tokens - 1))

    def done(self, status: int) -> None:
        self.metrics.duration.observe(time.perf_counter() - self.start)
        self.metrics.requests.labels(self.endpoint, str(status)).inc()
