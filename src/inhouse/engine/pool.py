"""ModelPool: engines loaded on demand, unloaded when idle or to stay under a memory budget."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from inhouse.engine.client import AsyncEngine
from inhouse.engine.protocol import Lease
from inhouse.errors import EngineDead

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
        """A request holds a lease on the engine: it must not be unloaded."""
        return self.engine.num_pending > 0

    @property
    def idle_since(self) -> float:
        """When it was last handed out or last left without leases (monotonic)."""
        return max(self.last_used, self.engine.idle_since)


EngineBuilder = Callable[[ModelSpec], AsyncEngine]


class ModelPool:
    """Requests for a model that is loading wait for it; they never fail because of it.

    An engine is never unloaded while a request holds a lease on it (see `lease`)."""

    def __init__(self, build: EngineBuilder, *, budget_bytes: int, keep_alive_s: float) -> None:
        self._build = build
        self.budget_bytes = budget_bytes
        self.keep_alive_s = keep_alive_s
        self._loaded: dict[str, Loaded] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._later: set[asyncio.Task[bool]] = set()  # unloads waiting for their leases
        self._joining: dict[str, int] = {}  # loaded, waiting for room: name -> bytes
        self._closed = False

    @property
    def loaded(self) -> list[Loaded]:
        return list(self._loaded.values())

    @property
    def num_pending(self) -> int:
        """Requests admitted (leased) across every loaded model."""
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

    async def lease(self, spec: ModelSpec, n: int) -> Lease:
        """Room for `n` requests on the running engine of `spec`, which stays loaded until
        the lease is released; Overloaded (503) when the engine has no room."""
        engine = await self.engine(spec)
        # no await between finding the engine and leasing it: nothing can unload it in between
        return engine.reserve(n)

    async def _load(self, spec: ModelSpec) -> Loaded:
        old = self._loaded.pop(spec.name, None)
        if old is not None:
            await self._unload(old, "replaced")
        began = time.perf_counter()
        engine = await asyncio.to_thread(self._build, spec)
        engine.start()
        loaded = Loaded(spec, engine, load_seconds=time.perf_counter() - began)
        log.info("loaded %s in %.2f s", spec.name, loaded.load_seconds)
        # the others make room before it joins the pool: while they drain, an engine nobody
        # holds yet must not look idle to the reaper
        self._joining[spec.name] = loaded.memory_bytes
        try:
            await self._fit_budget()
            if self._closed:
                raise EngineDead("the server is shutting down")
        except BaseException:
            await asyncio.to_thread(engine.close)  # in no pool: nobody else would close it
            raise
        finally:
            del self._joining[spec.name]
        loaded.last_used = time.monotonic()
        self._loaded[spec.name] = loaded
        return loaded

    async def _fit_budget(self) -> None:
        """Unload least recently used idle models until they and the models waiting to join
        fit the budget."""
        while self.used_bytes + sum(self._joining.values()) > self.budget_bytes:
            idle = [m for m in self._loaded.values() if not m.busy]
            if not idle:
                if self._loaded:
                    log.warning("memory budget exceeded: every other model is busy")
                return
            victim = min(idle, key=lambda m: m.last_used)
            del self._loaded[victim.spec.name]
            await self._unload(victim, "memory budget")

    async def _unload(self, loaded: Loaded, why: str, *, wait: bool = True) -> None:
        """Close an engine already taken out of the pool, once its leases are released."""
        if wait:
            await loaded.engine.wait_idle()
        log.info("unloading %s (%s)", loaded.spec.name, why)
        await asyncio.to_thread(loaded.engine.close)

    async def unload(self, name: str) -> bool:
        """Unload `name` once no request holds it (at once when idle); False if not loaded."""
        while (loaded := self._loaded.get(name)) is not None and loaded.busy:
            await loaded.engine.wait_idle()
        if loaded is None:
            return False
        del self._loaded[name]
        await self._unload(loaded, "asked")
        return True

    async def unload_when_idle(self, name: str) -> None:
        """Unload `name` now if no request holds it; else, without waiting, once none does."""
        loaded = self._loaded.get(name)
        if loaded is None or not loaded.busy:
            await self.unload(name)
            return
        task = asyncio.create_task(self.unload(name))
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    def start(self) -> None:
        self._reaper = asyncio.create_task(self._reap_idle())

    async def _reap_idle(self) -> None:
        while True:
            await asyncio.sleep(max(0.05, min(self.keep_alive_s / 4, 5.0)))
            now = time.monotonic()
            for loaded in list(self._loaded.values()):
                idle_for = now - loaded.idle_since
                if loaded.spec.pinned or loaded.busy or idle_for < self.keep_alive_s:
                    continue
                if self._loaded.get(loaded.spec.name) is loaded:
                    del self._loaded[loaded.spec.name]
                    await self._unload(loaded, f"idle {idle_for:.0f} s")

    async def close(self) -> None:
        self._closed = True  # a load still making room closes its engine itself
        for task in [self._reaper, *self._later]:
            if task is not None:
                task.cancel()
        loaded, self._loaded = list(self._loaded.values()), {}
        for each in loaded:
            await self._unload(each, "shutdown", wait=False)  # the server has drained
