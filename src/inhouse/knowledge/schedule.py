"""Scheduled syncs inside `inhouse serve`: each connector with an `--every` interval is synced
when due, one sync at a time, in a worker thread (never on the event loop).

Stopping (the `stop` event, or cancelling the task) ends the current sync at its next row:
the sync is recorded as failed ("stopped") and the index keeps what it had.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time

from inhouse.errors import InhouseError
from inhouse.knowledge.connectors import SyncStopped
from inhouse.knowledge.row_sync import Tally
from inhouse.knowledge.service import KnowledgeService

log = logging.getLogger(__name__)

SCHEDULER_ACTOR = "scheduler"
MIN_SLEEP_S = 1.0  # never a busy loop, even if a due sync cannot start
MAX_SLEEP_S = 30.0  # a connector added meanwhile (by the CLI) is noticed within this time


async def run_scheduled_syncs(
    service: KnowledgeService, stop: asyncio.Event | None = None, max_sleep_s: float = MAX_SLEEP_S
) -> None:
    """Run due syncs until `stop` is set (or the task is cancelled)."""
    stop = stop or asyncio.Event()
    stopping = threading.Event()  # what the worker thread sees of `stop`
    mirror = asyncio.create_task(_mirror(stop, stopping))
    try:
        while not stop.is_set():
            upcoming = await _run_due(service, stop, stopping)
            wait = max_sleep_s if upcoming is None else upcoming - time.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    stop.wait(), timeout=min(max(wait, MIN_SLEEP_S), max_sleep_s)
                )
    finally:
        stopping.set()
        mirror.cancel()


async def _mirror(stop: asyncio.Event, stopping: threading.Event) -> None:
    """Tell the running sync's thread at once when `stop` is set."""
    await stop.wait()
    stopping.set()


async def _run_due(
    service: KnowledgeService, stop: asyncio.Event, stopping: threading.Event
) -> float | None:
    """Sync every connector due now, in turn; when the next one falls due (None: none)."""
    try:
        due, upcoming = await asyncio.to_thread(service.due_syncs, time.time())
    except Exception:  # the store is unreachable for now: try again on the next round
        log.exception("cannot read which knowledge syncs are due")
        return None
    for name in due:
        if stop.is_set():
            break
        await asyncio.to_thread(_sync, service, name, stopping)
    return upcoming if not due else time.time()  # look again at once: time passed


def _sync(service: KnowledgeService, name: str, stopping: threading.Event) -> None:
    def check(_: Tally) -> None:
        if stopping.is_set():
            raise SyncStopped("stopped: the server is shutting down")

    try:
        status = service.sync(SCHEDULER_ACTOR, name, check)
    except InhouseError as exc:  # running already (from the CLI), or deleted meanwhile
        log.info("scheduled sync of %s skipped: %s", name, exc.message)
        return
    except Exception:
        log.exception("scheduled sync of %s failed", name)
        return
    log.info("scheduled sync of %s: %s", name, status["status"])
