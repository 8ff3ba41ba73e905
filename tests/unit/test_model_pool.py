"""ModelPool over fake engines: load on demand, one load per model, LRU and idle unloading."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from inhouse.engine.client import AsyncEngine
from inhouse.engine.pool import ModelPool, ModelSpec
from inhouse.engine.request import FinishReason, GenerationRequest, SamplingParams, TokenEvent
from inhouse.errors import EngineDead, Overloaded
from tests.conftest import fake_engine
from tests.fakes import FakeRunner

MODEL_BYTES = 100


class Builder:
    """Builds a fake engine of MODEL_BYTES per spec, and remembers what it built."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.built: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, spec: ModelSpec) -> AsyncEngine:
        time.sleep(self.delay_s)  # runs in a worker thread, as a real load does
        with self._lock:
            self.built.append(spec.name)
        runner = FakeRunner()
        runner.info = replace(runner.info, name=spec.name, memory_bytes=MODEL_BYTES)
        return fake_engine(runner)


def spec(name: str, *, pinned: bool = False) -> ModelSpec:
    return ModelSpec(name=name, path=Path("/dev/null"), pinned=pinned)


def names(pool: ModelPool) -> list[str]:
    return [m.spec.name for m in pool.loaded]


@pytest.fixture
async def pools() -> AsyncIterator[list[ModelPool]]:
    """Pools a test makes; every one is closed (engines stopped) when it ends."""
    made: list[ModelPool] = []
    yield made
    for pool in made:
        await pool.close()


def make_pool(
    made: list[ModelPool], build: Builder, *, models: float = 10, keep_alive_s: float = 300
) -> ModelPool:
    pool = ModelPool(build, budget_bytes=int(models * MODEL_BYTES), keep_alive_s=keep_alive_s)
    made.append(pool)
    return pool


def request(text: str = "Hi", max_tokens: int = 5) -> GenerationRequest:
    tokens = tuple(b + 1 for b in text.encode())
    return GenerationRequest(uuid.uuid4().hex, tokens, SamplingParams(max_tokens=max_tokens))


async def answer(engine: AsyncEngine) -> tuple[str, FinishReason | None]:
    events = [e async for e in engine.generate(request())]
    return "".join(e.text for e in events), events[-1].finish_reason


async def test_concurrent_requests_for_a_loading_model_share_one_load(
    pools: list[ModelPool],
) -> None:
    build = Builder(delay_s=0.2)
    pool = make_pool(pools, build)
    engines = await asyncio.gather(*(pool.engine(spec("a")) for _ in range(6)))
    assert build.built == ["a"]
    assert all(e is engines[0] for e in engines)
    assert await answer(engines[0]) == ("hello", FinishReason.LENGTH)


async def test_different_models_load_side_by_side(pools: list[ModelPool]) -> None:
    build = Builder(delay_s=0.05)
    pool = make_pool(pools, build)
    a, b = await asyncio.gather(pool.engine(spec("a")), pool.engine(spec("b")))
    assert a is not b and sorted(build.built) == ["a", "b"]
    assert await answer(a) == await answer(b) == ("hello", FinishReason.LENGTH)


async def test_the_least_recently_used_model_is_unloaded_to_fit_the_budget(
    pools: list[ModelPool],
) -> None:
    pool = make_pool(pools, Builder(), models=2.5)
    a = await pool.engine(spec("a"))
    b = await pool.engine(spec("b"))
    await pool.engine(spec("a"))  # a is now used more recently than b
    await pool.engine(spec("c"))
    assert names(pool) == ["a", "c"]
    assert not b.alive and a.alive
    await pool.engine(spec("d"))
    assert names(pool) == ["c", "d"]
    assert not a.alive
    assert pool.used_bytes <= pool.budget_bytes


async def test_a_model_with_requests_in_flight_is_not_unloaded(pools: list[ModelPool]) -> None:
    pool = make_pool(pools, Builder(), models=1.5)
    a = await pool.engine(spec("a"))
    stream = a.generate(request(max_tokens=8))
    first: TokenEvent = await anext(stream)
    await pool.engine(spec("b"))  # over budget, but a is busy
    assert names(pool) == ["a", "b"]
    rest = [e async for e in stream]
    assert first.text + "".join(e.text for e in rest) == "hello wo"
    assert rest[-1].finish_reason is FinishReason.LENGTH
    await pool.engine(spec("c"))  # now a is idle and the least recently used
    assert "a" not in names(pool) and not a.alive


async def test_a_model_loaded_while_another_closes_slowly_is_not_reaped_before_its_lease(
    pools: list[ModelPool],
) -> None:
    pool = make_pool(pools, Builder(), models=1.5, keep_alive_s=0.1)
    old = await pool.engine(spec("old"))
    close = old.close

    def slow_close(timeout: float = 10.0) -> None:
        time.sleep(0.6)  # a model that takes its time to free (a busy machine)
        close(timeout)

    old.close = slow_close  # type: ignore[method-assign]
    pool.start()
    lease = await pool.lease(spec("new"), 1)  # "old" makes room while the reaper runs
    try:
        assert lease.engine.stats().alive
        assert names(pool) == ["new"]
    finally:
        lease.release()


async def test_a_model_still_making_room_when_the_pool_closes_is_closed_too(
    pools: list[ModelPool],
) -> None:
    built: list[AsyncEngine] = []
    build = Builder()

    def keep(spec: ModelSpec) -> AsyncEngine:
        engine = build(spec)
        built.append(engine)
        return engine

    pool = ModelPool(keep, budget_bytes=int(1.5 * MODEL_BYTES), keep_alive_s=300)
    old = await pool.engine(spec("old"))
    close = old.close

    def slow_close(timeout: float = 10.0) -> None:
        time.sleep(0.5)
        close(timeout)

    old.close = slow_close  # type: ignore[method-assign]
    loading = asyncio.create_task(pool.engine(spec("new")))
    while len(built) < 2:  # "new" is built and now waits for "old" to make room
        await asyncio.sleep(0.01)
    await pool.close()
    with pytest.raises(EngineDead):
        await loading
    assert not any(engine.alive for engine in built)


async def test_idle_models_are_unloaded_but_not_the_pinned_one(pools: list[ModelPool]) -> None:
    pool = make_pool(pools, Builder(), keep_alive_s=0.1)
    default = await pool.engine(spec("default", pinned=True))
    other = await pool.engine(spec("other"))
    pool.start()
    for _ in range(200):  # up to ~10 s on a slow machine
        if "other" not in names(pool):
            break
        await asyncio.sleep(0.05)
    assert names(pool) == ["default"]
    assert not other.alive
    assert await answer(default) == ("hello", FinishReason.LENGTH)


async def test_a_busy_model_is_not_unloaded_for_idleness(pools: list[ModelPool]) -> None:
    pool = make_pool(pools, Builder(), keep_alive_s=0.1)
    busy = await pool.engine(spec("busy"))
    stream = busy.generate(request())
    await anext(stream)
    await pool.engine(spec("idle"))
    pool.start()
    for _ in range(200):
        if "idle" not in names(pool):
            break
        await asyncio.sleep(0.05)
    assert names(pool) == ["busy"]
    assert [e async for e in stream][-1].finish_reason is FinishReason.LENGTH


async def test_an_unloaded_model_loads_again_on_the_next_request(pools: list[ModelPool]) -> None:
    build = Builder()
    pool = make_pool(pools, build)
    first = await pool.engine(spec("a"))
    assert await pool.unload("a")
    assert not first.alive and names(pool) == []
    assert not await pool.unload("a")
    again = await pool.engine(spec("a"))
    assert again is not first and build.built == ["a", "a"]
    assert await answer(again) == ("hello", FinishReason.LENGTH)


async def test_a_changed_spec_replaces_the_loaded_engine(pools: list[ModelPool]) -> None:
    pool = make_pool(pools, Builder())
    old = await pool.engine(spec("tuned"))
    new = await pool.engine(replace(spec("tuned"), adapters=((Path("/dev/null"), 0.5),)))
    assert new is not old and not old.alive
    assert names(pool) == ["tuned"]


async def test_a_leased_engine_is_not_unloaded_before_it_streams(pools: list[ModelPool]) -> None:
    """A prepared request holds its engine from the lease on, not from its first token."""
    pool = make_pool(pools, Builder(), models=1.5, keep_alive_s=0.1)
    lease = await pool.lease(spec("a"), 1)
    await pool.engine(spec("b"))  # over budget: a is least recently used, but leased
    pool.start()
    await asyncio.sleep(0.5)  # several idle sweeps
    assert "a" in names(pool) and lease.engine.alive
    events = [e async for e in lease.engine.generate(request(), lease)]
    assert "".join(e.text for e in events) == "hello"
    lease.release()
    for _ in range(200):  # the engine leaves the pool, then its thread stops: wait for both
        if "a" not in names(pool) and not lease.engine.alive:
            break
        await asyncio.sleep(0.05)
    assert "a" not in names(pool) and not lease.engine.alive


async def test_an_asked_unload_waits_for_the_leases(pools: list[ModelPool]) -> None:
    pool = make_pool(pools, Builder())
    lease = await pool.lease(spec("a"), 2)
    unloading = asyncio.ensure_future(pool.unload("a"))
    await asyncio.sleep(0.2)
    assert not unloading.done() and lease.engine.alive
    lease.release()
    assert await asyncio.wait_for(unloading, 10)
    assert names(pool) == [] and not lease.engine.alive


async def test_a_replaced_engine_is_closed_once_its_leases_end(pools: list[ModelPool]) -> None:
    pool = make_pool(pools, Builder())
    lease = await pool.lease(spec("tuned"), 1)
    tuned = replace(spec("tuned"), adapters=((Path("/dev/null"), 0.5),))
    loading = asyncio.ensure_future(pool.engine(tuned))
    await asyncio.sleep(0.2)
    assert lease.engine.alive
    assert "".join([e.text async for e in lease.engine.generate(request(), lease)]) == "hello"
    lease.release()
    new = await asyncio.wait_for(loading, 10)
    assert new is not lease.engine and not lease.engine.alive


async def test_a_full_engine_refuses_the_lease(pools: list[ModelPool]) -> None:
    pool = make_pool(pools, Builder())
    engine = await pool.engine(spec("a"))
    held = await pool.lease(spec("a"), engine.max_pending)
    with pytest.raises(Overloaded):
        await pool.lease(spec("a"), 1)
    assert engine.num_pending == engine.max_pending
    held.release()
    (await pool.lease(spec("a"), 1)).release()


async def test_unload_when_idle_leaves_a_busy_model_to_its_requests(
    pools: list[ModelPool],
) -> None:
    """keep_alive 0 from one client must not wait for, or cut off, another client's request."""
    pool = make_pool(pools, Builder())
    lease = await pool.lease(spec("a"), 1)
    await asyncio.wait_for(pool.unload_when_idle("a"), 5)  # returns without waiting
    assert names(pool) == ["a"] and lease.engine.alive
    assert "".join([e.text async for e in lease.engine.generate(request(), lease)]) == "hello"
    lease.release()
    for _ in range(200):
        if not lease.engine.alive:
            break
        await asyncio.sleep(0.05)
    assert names(pool) == [] and not lease.engine.alive
    await pool.unload_when_idle("a")  # not loaded: nothing to do
