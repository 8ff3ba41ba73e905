"""Training inside `inhouse serve`: queued jobs are trained one at a time in a worker thread
(the trainer itself is a child process), and the continual-learning schedules are checked
between jobs. Serving goes on meanwhile; the trainer's threads are `tuning.threads`.

On shutdown the running trainer is stopped and its job left to resume from its last
checkpoint at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from inhouse.api.deps import AppState
from inhouse.models.store import ModelStore
from inhouse.tuning.evaluate import PoolAnswerer
from inhouse.tuning.gate import served_evaluator
from inhouse.tuning.runner import JobRunner
from inhouse.tuning.schedule import run_due_schedules

log = logging.getLogger(__name__)

IDLE_POLL_S = 2.0  # a job queued by the CLI or the API starts within this time


async def run_tuning(
    runner: JobRunner, stop: asyncio.Event, chores: Callable[[], None] | None = None
) -> None:
    """Train queued jobs and run `chores` (the schedules) until `stop` is set."""
    mirror = asyncio.create_task(_mirror(stop, runner))
    try:
        while not stop.is_set():
            ran = await _guarded(runner.run_pending)
            if chores is not None:
                await _guarded(chores)
            if not ran:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), IDLE_POLL_S)
    finally:
        runner.stopping.set()
        mirror.cancel()


async def _mirror(stop: asyncio.Event, runner: JobRunner) -> None:
    """Tell the runner's thread at once when `stop` is set."""
    await stop.wait()
    runner.stopping.set()


async def _guarded(work: Callable[[], bool | None]) -> bool:
    """Run `work` in a worker thread; a failure is logged and the loop goes on."""
    try:
        return bool(await asyncio.to_thread(work))
    except Exception:  # the store is unreachable for now: try again on the next round
        log.exception("tuning: %s failed", getattr(work, "__name__", work))
        return False


def start_training(state: AppState, stop: asyncio.Event) -> asyncio.Task[None] | None:
    """The training loop of this server, unless `tuning.run_jobs` is off."""
    settings = state.settings
    if not settings.tuning.run_jobs:
        return None
    models = ModelStore(settings.home)
    answerer = PoolAnswerer(state.pool, asyncio.get_running_loop())
    evaluator = served_evaluator(state.resolver, answerer, settings)
    runner = JobRunner(state.db, state.audit, models, settings.home, settings.tuning, evaluator)
    schedules = Every(
        settings.tuning.schedules_every_s,
        lambda: _log_outcomes(run_due_schedules(state.db, state.audit, models, settings.knowledge)),
    )
    return asyncio.create_task(run_tuning(runner, stop, schedules))


class Every:
    """`work`, at most once per `seconds` however often it is called."""

    def __init__(self, seconds: float, work: Callable[[], None]) -> None:
        self.seconds = seconds
        self.work = work
        self.last = -seconds

    def __call__(self) -> None:
        if time.monotonic() - self.last >= self.seconds:
            self.last = time.monotonic()
            self.work()


def _log_outcomes(outcomes: list[dict[str, Any]]) -> None:
    for outcome in outcomes:
        if outcome.keys() & {"error", "decision", "started"}:
            log.info("tuning schedule: %s", outcome)
