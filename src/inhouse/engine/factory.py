"""Builds the real engine (llama.cpp) for a model spec."""

from __future__ import annotations

from inhouse.config import EngineSettings
from inhouse.engine.client import AsyncEngine
from inhouse.engine.pool import ModelSpec
from inhouse.engine.scheduler import Scheduler
from inhouse.engine.streams import StreamScheduler


def stream_cells(kv_cells: int, n_streams: int) -> int:
    """Cells of each KV stream, as llama.cpp sizes them: an even share, rounded up to 256."""
    return -(-(kv_cells // n_streams) // 256) * 256


def make_scheduler(settings: EngineSettings) -> Scheduler:
    """The scheduler for the configured KV layout (its `n_slots` are llama.cpp seq ids)."""
    if settings.kv_layout == "streams":
        return StreamScheduler(
            stream_cells=stream_cells(settings.kv_cells, settings.max_running),
            n_streams=settings.max_running,
            max_running=settings.max_running,
            n_batch=settings.n_batch,
        )
    return Scheduler(
        kv_cells=settings.kv_cells,
        max_running=settings.max_running,
        n_batch=settings.n_batch,
        cache_slots=settings.prefix_cache_slots,
        cache_tokens=settings.prefix_cache_tokens,
    )


def build_engine(spec: ModelSpec, settings: EngineSettings) -> AsyncEngine:
    """Load `spec` (GGUF + LoRA adapters) into a LlamaRunner and wrap it in an AsyncEngine."""
    from inhouse.engine.runner import LlamaRunner

    scheduler = make_scheduler(settings)
    runner = LlamaRunner(
        spec.path,
        spec.name,
        kv_cells=settings.kv_cells,
        n_batch=settings.n_batch,
        n_seq_max=scheduler.n_slots,
        n_threads=settings.n_threads,
        adapters=spec.adapters,
        kv_unified=settings.kv_layout == "unified",
    )
    runner.max_sample_s = settings.max_sample_ms / 1000
    try:
        return AsyncEngine(
            runner, scheduler, max_queue=settings.max_queue, max_context=settings.max_context
        )
    except Exception:
        runner.close()
        raise
