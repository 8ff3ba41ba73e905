"""The trainer as a child process: started so that it dies with its runner, stopped gently
then firmly, and its progress file read line by line as it grows."""

from __future__ import annotations

import ctypes
import json
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

TRAINER = (sys.executable, "-m", "inhouse.tuning.trainer")  # + the job's folder
STOP_GRACE_S = 5.0
PR_SET_PDEATHSIG = 1
try:
    _PRCTL: Any = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: the trainer outlives a killed runner
    _PRCTL = None


def read_new_lines(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    """The complete JSON lines written to `path` after `offset`, and the offset after them
    (a line still being written is left for the next call)."""
    if not path.exists():
        return [], offset
    with open(path, "rb") as source:
        source.seek(offset)
        chunk = source.read()
    end = chunk.rfind(b"\n") + 1
    lines = [json.loads(line) for line in chunk[:end].splitlines() if line.strip()]
    return lines, offset + end


def spawn(trainer: Sequence[str], folder: Path, output: IO[bytes]) -> subprocess.Popen[bytes]:
    """The trainer (which lowers its own priority), dying with this process's thread."""
    return subprocess.Popen(
        [*trainer, str(folder)],
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=output,
        preexec_fn=_die_with_parent,
        close_fds=True,
    )


def _die_with_parent() -> None:
    """In the child before exec: be killed when the runner's thread dies (Linux's parent-death
    signal), so a runner killed with -9 leaves no trainer behind to race its successor. The
    function was looked up in the parent: the child only calls it."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL)


def stop(child: subprocess.Popen[bytes]) -> None:
    child.terminate()
    try:
        child.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
