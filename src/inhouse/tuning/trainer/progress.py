"""progress.jsonl: the child's events, one JSON object a line, appended and flushed per line.

The runner tails this file; a line is written whole with one write call and flushed, so a
reader never sees half an event unless the child is killed mid-write; then the last line
lacks its newline, a reader leaves it, and the next run cuts it off before appending.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

PROGRESS_FILE = "progress.jsonl"


class Progress:
    """Appends events to JOB_DIR/progress.jsonl."""

    def __init__(self, job_dir: Path) -> None:
        self.path = job_dir / PROGRESS_FILE
        self._repair()

    def _repair(self) -> None:
        """Cut off a line a killed run left unfinished: readers keep their offsets at the
        last newline, and the next event starts a line of its own."""
        if self.path.is_file():
            data = self.path.read_bytes()
            end = data.rfind(b"\n") + 1
            if end < len(data):
                with self.path.open("rb+") as file:
                    file.truncate(end)

    def emit(self, kind: str, **fields: Any) -> None:
        """Append {"type": kind, **fields} as one line."""
        self._append(json.dumps({"type": kind, **fields}) + "\n")

    def _append(self, text: str) -> None:
        with self.path.open("a", encoding="utf-8") as file:
            file.write(text)
            file.flush()


def read_events(job_dir: Path) -> list[dict[str, Any]]:
    """Every complete event written so far (a torn last line is skipped)."""
    path = job_dir / PROGRESS_FILE
    if not path.is_file():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def now() -> float:
    """Wall-clock time for events (seconds since the epoch)."""
    return round(time.time(), 3)
