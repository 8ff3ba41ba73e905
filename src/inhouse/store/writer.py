"""A write-behind queue: one thread commits queued work in batches, one transaction each.

Used where a write must happen but need not delay the response (usage rows, settlements):
a batch shares one commit, and a batch that fails is retried item by item, so one bad item
never takes the others down with it.
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

T = TypeVar("T")
MAX_BATCH = 256
LINGER_S = 0.05  # gather a batch this long: fewer commits, shorter holds of the write lock
log = logging.getLogger("inhouse.store.writer")


class BatchWriter(Generic[T]):
    def __init__(self, db: Database, write: Callable[[Session, list[T]], None], name: str) -> None:
        self.db = db
        self.write = write
        self._queue: queue.Queue[T | None] = queue.Queue()
        self._idle = threading.Condition()
        self._pending = 0
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
        self._queue.put(None)
        self._thread.join(60)

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
        try:
            with self.db.write() as session:
                self.write(session, batch)
            return
        except Exception:
            if len(batch) == 1:
                log.exception("could not write a queued item; it is lost")
                return
        for item in batch:  # one bad item: write the others one by one
            self._commit([item])
