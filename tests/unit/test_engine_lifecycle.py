"""An engine's end: stop and close never free the model under a running step, and no request
is left waiting on an engine that has stopped. Leases reserve room from admission on."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from inhouse.engine.backend import Sampled
from inhouse.engine.client import AsyncEngine
from inhouse.engine.protocol import Lease
from inhouse.engine.request import FinishReason, GenerationRequest, SamplingParams, TokenEvent
from inhouse.engine.scheduler import StepPlan
from inhouse.errors import EngineDead, Overloaded
from tests.conftest import fake_engine
from tests.fakes import FakeRunner

GUARD_S = 10.0  # "it ends at all": far beyond what any of these needs


@dataclass
class StuckRunner(FakeRunner):
    """A runner whose decode steps block until released, as a long llama_decode does; it
    records whether the model was freed while a step was still running."""

    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    stepping: bool = False
    closed: bool = False
    closed_while_stepping: bool = False

    def execute(self, plan: StepPlan) -> list[Sampled] | None:
        self.stepping = True
        try:
            if plan.chunks:
                self.entered.set()
                self.release.wait(GUARD_S)
            return super().execute(plan)
        finally:
            self.stepping = False

    def close(self) -> None:
        self.closed_while_stepping = self.closed_while_stepping or self.stepping
        self.closed = True
        super().close()


def request(max_tokens: int = 5) -> GenerationRequest:
    return GenerationRequest(
        uuid.uuid4().hex, tuple(b + 1 for b in b"Hi"), SamplingParams(max_tokens=max_tokens)
    )


async def drain(events: AsyncIterator[TokenEvent]) -> list[TokenEvent]:
    return [e async for e in events]


async def until(condition: object) -> None:
    for _ in range(int(GUARD_S / 0.01)):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


@pytest.fixture
async def engines() -> AsyncIterator[list[AsyncEngine]]:
    made: list[AsyncEngine] = []
    yield made
    for engine in made:
        await asyncio.to_thread(engine.close, 1.0)


def started(made: list[AsyncEngine], runner: FakeRunner, **scheduler_args: int) -> AsyncEngine:
    engine = fake_engine(runner, **scheduler_args)
    engine.start()
    made.append(engine)
    return engine


async def test_close_frees_the_model_only_after_a_stuck_step_returns(
    engines: list[AsyncEngine],
) -> None:
    runner = StuckRunner()
    engine = started(engines, runner)
    stream = asyncio.ensure_future(drain(engine.generate(request())))
    assert await asyncio.to_thread(runner.entered.wait, GUARD_S)
    await asyncio.to_thread(engine.close, 0.2)  # the thread is stuck: the join times out
    assert engine.alive and not runner.closed  # freeing the model now would crash the step
    runner.release.set()
    events = await asyncio.wait_for(stream, GUARD_S)
    await until(lambda: not engine.alive)
    assert runner.closed and not runner.closed_while_stepping
    assert events[-1].finish_reason is FinishReason.ERROR


async def test_close_of_an_idle_engine_frees_the_model(engines: list[AsyncEngine]) -> None:
    runner = StuckRunner()
    engine = started(engines, runner)
    await asyncio.to_thread(engine.close)
    assert not engine.alive and runner.closed
    never_started = fake_engine(runner := StuckRunner())
    never_started.close()
    assert runner.closed


async def test_a_request_submitted_after_stop_ends_with_a_clear_error(
    engines: list[AsyncEngine],
) -> None:
    engine = started(engines, FakeRunner())
    lease = engine.reserve(1)  # admitted while the engine ran
    await asyncio.to_thread(engine.stop)
    events = await asyncio.wait_for(drain(engine.generate(request(), lease)), GUARD_S)
    assert events[-1].finish_reason is FinishReason.ERROR
    assert events[-1].error is not None and "engine stopped" in events[-1].error
    with pytest.raises(EngineDead):
        engine.reserve(1)


async def test_requests_racing_a_stop_all_end(engines: list[AsyncEngine]) -> None:
    """Requests in the batch, in the queue, in the inbox and sent after the stop: each ends."""
    engine = started(engines, FakeRunner(step_delay=0.005), max_running=2, max_queue=64)
    leases = [engine.reserve(1) for _ in range(40)]

    def run(lease: Lease) -> asyncio.Future[list[TokenEvent]]:
        return asyncio.ensure_future(drain(engine.generate(request(50), lease)))

    streams = [run(lease) for lease in leases[:20]]
    await asyncio.sleep(0.05)
    stopping = asyncio.ensure_future(asyncio.to_thread(engine.stop))
    streams += [run(lease) for lease in leases[20:]]
    await stopping
    ended = await asyncio.wait_for(asyncio.gather(*streams), GUARD_S)
    assert all(events[-1].finish_reason is not None for events in ended)
    assert any(events[-1].finish_reason is FinishReason.ERROR for events in ended)


async def test_a_lease_reserves_room_and_is_given_back_once(engines: list[AsyncEngine]) -> None:
    engine = started(engines, FakeRunner(), max_running=1, max_queue=1)
    first = engine.reserve(2)
    with pytest.raises(Overloaded):
        engine.reserve(1)
    assert engine.num_pending == 2
    events = await drain(engine.generate(request(), first))  # no second check under a lease
    assert "".join(e.text for e in events) == "hello"
    first.release()
    first.release()
    assert engine.num_pending == 0
    second = engine.reserve(2)
    with pytest.raises(Overloaded):
        engine.reserve(1)
    second.release()


async def test_wait_idle_returns_when_the_last_lease_is_released(
    engines: list[AsyncEngine],
) -> None:
    engine = started(engines, FakeRunner())
    await asyncio.wait_for(engine.wait_idle(), GUARD_S)  # none held: at once
    lease = engine.reserve(1)
    waiter = asyncio.ensure_future(engine.wait_idle())
    await asyncio.sleep(0.05)
    assert not waiter.done()
    lease.release()
    await asyncio.wait_for(waiter, GUARD_S)
