"""The spill file: queued writes the database could not take before the process stopped.

JSON Lines, owner-only, appended and fsynced before the process exits; the next start
replays it, one transaction per item, and keeps only what still cannot be written.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session

from inhouse.store.private import FILE_MODE, private_dir

T = TypeVar("T")
Record = dict[str, Any]
log = logging.getLogger("inhouse.store.spill")


def _all_new(_session: Session, items: list[T]) -> list[T]:
    return items


@dataclass(frozen=True)
class Spill(Generic[T]):
    """Where a writer's items go when they cannot be written, and how to bring them back.

    `unwritten` returns the items the store does not hold yet, inside the replay's own
    transaction: a replay cut short by a crash is replayed again without duplicates."""

    path: Path
    encode: Callable[[T], Record]
    decode: Callable[[Record], T]
    unwritten: Callable[[Session, list[T]], list[T]] = _all_new


class SpillFile:
    """Append-only JSON Lines on disk, each append fsynced before it returns."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, records: Sequence[Record]) -> None:
        lines = "".join(json.dumps(record, separators=(",", ":")) + "\n" for record in records)
        with self._lock:
            private_dir(self.path.parent)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
            try:
                os.write(fd, lines.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)

    def read(self) -> list[Record]:
        """Every complete record; a line torn by a crash while it was written is skipped."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        records: list[Record] = []
        for number, line in enumerate(text.splitlines(), 1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                log.error("%s line %d is not a whole record; it is skipped", self.path, number)
        return records

    def keep_only(self, records: Sequence[Record]) -> None:
        """Replace the file by `records` atomically; remove it when there are none."""
        with self._lock:
            if not records:
                self.path.unlink(missing_ok=True)
                return
            tmp = self.path.with_name(self.path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            with open(fd, "w", encoding="utf-8") as out:
                out.writelines(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
