"""A write-behind queue: one thread commits queued work in batches, one transaction each.

Used where a write must happen but need not delay the response (usage rows, settlements):
a batch shares one commit, and a batch that fails is retried item by item, so one bad item
never takes the others down with it. A busy or unreachable store is waited out (retries with
capped backoff for as long as the process runs); only when the process is told to stop is
what is left written to the spill file, which the next start replays.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from sqlalchemy.orm import Session

from inhouse.store.db import Database
from inhouse.store.spill import Record, Spill, SpillFile
from inhouse.store.transient import is_transient

T = TypeVar("T")
MAX_BATCH = 256
LINGER_S = 0.05  # gather a batch this long: fewer commits, shorter holds of the write lock
FIRST_BACKOFF_S = 0.05
MAX_BACKOFF_S = 2.0
JOIN_S = 60.0
log = logging.getLogger("inhouse.store.writer")


class BatchWriter(Generic[T]):
    """Writes submitted items behind the caller's back; with a `spill`, none is ever lost:
    it replays the spill file at construction, before anything new is queued."""

    def __init__(
        self,
        db: Database,
        write: Callable[[Session, list[T]], None],
        name: str,
        spill: Spill[T] | None = None,
    ) -> None:
        self.db = db
        self.write = write
        self.spill = spill
        self.retries = 0  # transient failures waited out so far (for tests and logs)
        self._spill_file = SpillFile(spill.path) if spill is not None else None
        self._queue: queue.Queue[T | None] = queue.Queue()
        self._idle = threading.Condition()
        self._pending = 0
        self._stopping = threading.Event()
        self._unreachable = False  # told to stop and the store refused: spill the rest
        self.replayed = self._replay()
        self._thread = threading.Thread(target=self._run, name=f"writer-{name}", daemon=True)
        self._thread.start()

    def submit(self, item: T) -> None:
        with self._idle:
            self._pending += 1
        self._queue.put(item)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything submitted so far is written (True) or `timeout` passes."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        """Write what is queued; what the store will not take now goes to the spill file."""
        self._stopping.set()
        self._queue.put(None)
        self._thread.join(JOIN_S)
        if self._thread.is_alive():  # hung on the store: save what it has not taken yet
            left = [item for item in _drain(self._queue) if item is not None]
            log.error("the writer did not stop within %.0f s", JOIN_S)
            self._give_up(left)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            deadline = time.monotonic() + LINGER_S
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._commit(batch)
            with self._idle:
                self._pending -= len(batch)
                self._idle.notify_all()
            if stop:
                return

    def _commit(self, batch: list[T]) -> None:
        """Write `batch`, waiting out a busy store; items that cannot be written are spilled."""
        if self._unreachable:
            self._give_up(batch)
            return
        error = self._attempt(batch)
        if error is None:
            return
        if len(batch) == 1:
            log.error("a queued item cannot be written (%s); it goes to the spill file", error)
            self._give_up(batch)
            return
        for item in batch:  # one bad item: write the others one by one
            self._commit([item])

    def _attempt(self, batch: list[T]) -> Exception | None:
        """None once written; the error when it is not transient, or when told to stop."""
        delay = FIRST_BACKOFF_S
        while True:
            try:
                with self.db.write() as session:
                    self.write(session, batch)
                return None
            except Exception as exc:
                if not is_transient(exc):
                    return exc
                if self._stopping.is_set():
                    self._unreachable = True
                    return exc
                self.retries += 1
                # the first retry, then one line per MAX_BACKOFF_S while the outage lasts
                level = (
                    logging.WARNING if delay in (FIRST_BACKOFF_S, MAX_BACKOFF_S) else logging.DEBUG
                )
                log.log(level, "store busy (%s); %d items wait", _first_line(exc), len(batch))
            self._stopping.wait(delay)  # a stop cuts the wait short: one last attempt, then spill
            delay = min(delay * 2, MAX_BACKOFF_S)

    def _give_up(self, items: list[T]) -> None:
        """Keep `items` in the spill file for the next start (or log them lost if none)."""
        if not items:
            return
        if self.spill is None or self._spill_file is None:
            log.error("%d queued items could not be written and are lost", len(items))
            return
        try:
            self._spill_file.append([self.spill.encode(item) for item in items])
        except Exception:
            log.exception("%d queued items could not be spilled and are lost", len(items))
            return
        log.warning("%d queued items saved in %s for the next start", len(items), self.spill.path)

    def _replay(self) -> int:
        """Write what a previous run spilled, one transaction per item; the count written."""
        if self.spill is None or self._spill_file is None:
            return 0
        records = self._spill_file.read()
        kept = [record for record in records if not self._replay_one(self.spill, record)]
        self._spill_file.keep_only(kept)
        if records:
            log.info(
                "replayed %d spilled items; %d still cannot be written",
                len(records) - len(kept),
                len(kept),
            )
        return len(records) - len(kept)

    def _replay_one(self, spill: Spill[T], record: Record) -> bool:
        try:
            item = spill.decode(record)
            with self.db.write() as session:
                todo = spill.unwritten(session, [item])
                if todo:
                    self.write(session, todo)
            return True
        except Exception:
            log.exception("a spilled item cannot be written yet; it stays in %s", spill.path)
            return False


def _drain(items: queue.Queue[T | None]) -> list[T | None]:
    drained: list[T | None] = []
    while True:
        try:
            drained.append(items.get_nowait())
        except queue.Empty:
            return drained


def _first_line(exc: BaseException) -> str:
    return str(exc).split("\n", 1)[0]
