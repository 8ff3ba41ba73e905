"""Builds the real engine (llama.cpp) for a model spec."""

from __future__ import annotations

from inhouse.config import EngineSettings
from inhouse.engine.client import AsyncEngine
from inhouse.engine.pool import ModelSpec
from inhouse.engine.scheduler import Scheduler


def build_engine(spec: ModelSpec, settings: EngineSettings) -> AsyncEngine:
    """Load `spec` (GGUF + LoRA adapters) into a LlamaRunner and wrap it in an AsyncEngine."""
    from inhouse.engine.runner import LlamaRunner

    scheduler = Scheduler(
        kv_cells=settings.kv_cells,
        max_running=settings.max_running,
        n_batch=settings.n_batch,
        cache_slots=settings.prefix_cache_slots,
    )
    runner = LlamaRunner(
        spec.path,
        spec.name,
        kv_cells=settings.kv_cells,
        n_batch=settings.n_batch,
        n_seq_max=scheduler.n_slots,
        n_threads=settings.n_threads,
        adapters=spec.adapters,
    )
    try:
        return AsyncEngine(
            runner, scheduler, max_queue=settings.max_queue, max_context=settings.max_context
        )
    except Exception:
        runner.close()
        raise
