"""ModelPool: engines loaded on demand, unloaded when idle or to stay under a memory budget."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from inhouse.engine.client import AsyncEngine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """What to load: a GGUF file, optionally with LoRA adapters and their scales."""

    name: str
    path: Path
    adapters: tuple[tuple[Path, float], ...] = ()
    pinned: bool = False  # never unloaded for idleness (the default model)


@dataclass
class Loaded:
    spec: ModelSpec
    engine: AsyncEngine
    last_used: float = field(default_factory=time.monotonic)
    load_seconds: float = 0.0

    @property
    def memory_bytes(self) -> int:
        return self.engine.info.memory_bytes

    @property
    def busy(self) -> bool:
        return self.engine.num_pending > 0


EngineBuilder = Callable[[ModelSpec], AsyncEngine]


class ModelPool:
    """Requests for a model that is loading wait for it; they never fail because of it."""

    def __init__(self, build: EngineBuilder, *, budget_bytes: int, keep_alive_s: float) -> None:
        self._build = build
        self.budget_bytes = budget_bytes
        self.keep_alive_s = keep_alive_s
        self._loaded: dict[str, Loaded] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._reaper: asyncio.Task[None] | None = None

    @property
    def loaded(self) -> list[Loaded]:
        return list(self._loaded.values())

    @property
    def num_pending(self) -> int:
        """Requests in flight across every loaded model."""
        return sum(m.engine.num_pending for m in self._loaded.values())

    @property
    def used_bytes(self) -> int:
        return sum(m.memory_bytes for m in self._loaded.values())

    def get_loaded(self, name: str) -> Loaded | None:
        return self._loaded.get(name)

    async def engine(self, spec: ModelSpec) -> AsyncEngine:
        """The running engine of `spec`, loading it (and unloading others) when needed."""
        loaded = self._loaded.get(spec.name)
        if loaded is None or loaded.spec != spec:
            lock = self._locks.setdefault(spec.name, asyncio.Lock())
            async with lock:
                loaded = self._loaded.get(spec.name)
                if loaded is None or loaded.spec != spec:
                    loaded = await self._load(spec)
        loaded.last_used = time.monotonic()
        return loaded.engine

    async def _load(self, spec: ModelSpec) -> Loaded:
        old = self._loaded.pop(spec.name, None)
        if old is not None:
            await self._unload(old, "replaced")
        began = time.perf_counter()
        engine = await asyncio.to_thread(self._build, spec)
        engine.start()
        loaded = Loaded(spec, engine, load_seconds=time.perf_counter() - began)
        self._loaded[spec.name] = loaded
        log.info("loaded %s in %.2f s", spec.name, loaded.load_seconds)
        await self._fit_budget(keep=spec.name)
        return loaded

    async def _fit_budget(self, keep: str) -> None:
        """Unload least recently used idle models until the loaded ones fit the budget."""
        while self.used_bytes > self.budget_bytes:
            idle = [m for m in self._loaded.values() if m.spec.name != keep and not m.busy]
            if not idle:
                if len(self._loaded) > 1:
                    log.warning("memory budget exceeded: every other model is busy")
                return
            victim = min(idle, key=lambda m: m.last_used)
            del self._loaded[victim.spec.name]
            await self._unload(victim, "memory budget")

    async def _unload(self, loaded: Loaded, why: str) -> None:
        log.info("unloading %s (%s)", loaded.spec.name, why)
        await asyncio.to_thread(loaded.engine.close)

    async def unload(self, name: str) -> bool:
        loaded = self._loaded.pop(name, None)
        if loaded is None:
            return False
        await self._unload(loaded, "asked")
        return True

    def start(self) -> None:
        self._reaper = asyncio.create_task(self._reap_idle())

    async def _reap_idle(self) -> None:
        while True:
            await asyncio.sleep(max(0.05, min(self.keep_alive_s / 4, 5.0)))
            now = time.monotonic()
            for loaded in list(self._loaded.values()):
                idle_for = now - loaded.last_used
                if loaded.spec.pinned or loaded.busy or idle_for < self.keep_alive_s:
                    continue
                if self._loaded.get(loaded.spec.name) is loaded:
                    del self._loaded[loaded.spec.name]
                    await self._unload(loaded, f"idle {idle_for:.0f} s")

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for loaded in list(self._loaded.values()):
            await self._unload(loaded, "shutdown")
        self._loaded.clear()
