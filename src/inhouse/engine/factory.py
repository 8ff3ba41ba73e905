"""Builds the real engine (llama.cpp) from settings."""

from __future__ import annotations

from inhouse.config import EngineSettings
from inhouse.engine.client import AsyncEngine
from inhouse.engine.scheduler import Scheduler
from inhouse.models.default import default_model_path


def build_engine(settings: EngineSettings) -> AsyncEngine:
    """Load the configured GGUF model into a LlamaRunner and wrap it in an AsyncEngine."""
    from inhouse.engine.runner import LlamaRunner

    scheduler = Scheduler(
        kv_cells=settings.kv_cells,
        max_running=settings.max_running,
        n_batch=settings.n_batch,
        cache_slots=settings.prefix_cache_slots,
    )
    runner = LlamaRunner(
        settings.model_path or default_model_path(),
        settings.model_name,
        kv_cells=settings.kv_cells,
        n_batch=settings.n_batch,
        n_seq_max=scheduler.n_slots,
        n_threads=settings.n_threads,
    )
    return AsyncEngine(runner, scheduler, max_queue=settings.max_queue)
