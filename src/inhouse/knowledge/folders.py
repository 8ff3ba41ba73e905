"""The folder connector's file system side: which files a folder holds, read safely.

Links are not followed out of the folder: a symbolic link (file or directory) whose target
lies outside is reported and refused, never read. Files are opened without following a link
(O_NOFOLLOW) and read at most up to the size limit, so a file swapped or grown after the walk
cannot get past either check.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from inhouse.errors import InvalidRequest
from inhouse.knowledge.parsers import supported


@dataclass(frozen=True)
class Entry:
    """A file found under the folder: its absolute path, or why it is refused."""

    path: Path
    problem: str | None = None


class Unreadable(InvalidRequest):
    """This file cannot be taken in (too large, a link, gone); the message says why."""

    code = "unreadable_file"


def resolve_inside(root: Path, name: str) -> Path:
    """`root / name` with `..` and links resolved; InvalidRequest if it lies outside `root`."""
    base = root.resolve()
    candidate = (base / name).resolve()
    if not candidate.is_relative_to(base):
        raise InvalidRequest(f"{name!r} points outside the folder {base}", param="path")
    return candidate


def _link_problem(root: Path, path: Path) -> str | None:
    """None for a link inside `root` (its target is walked anyway); else why it is refused."""
    if path.resolve().is_relative_to(root):
        return None
    return "a symbolic link to outside the folder: refused"


def walk(root: Path) -> Iterator[Entry]:
    """The supported files under `root` (or `root` itself if a file), in sorted order."""
    root = root.resolve(strict=True)
    if root.is_file():
        yield Entry(root)
        return
    for directory, dirs, files in os.walk(root, followlinks=False):
        here = Path(directory)
        dirs.sort()
        for name in [d for d in dirs if (here / d).is_symlink()]:
            if problem := _link_problem(root, here / name):
                yield Entry(here / name, problem)
        for name in sorted(files):
            path = here / name
            if path.is_symlink():
                if problem := _link_problem(root, path):
                    yield Entry(path, problem)
            elif supported(name):
                yield Entry(path)


def read_bounded(path: Path, max_bytes: int) -> bytes:
    """The file's bytes; Unreadable if it is a link, not a regular file, or over `max_bytes`."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise Unreadable(f"cannot open the file: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise Unreadable("not a regular file")
        if info.st_size > max_bytes:
            raise Unreadable(_too_large(info.st_size, max_bytes))
        data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise Unreadable(_too_large(len(data), max_bytes))
    return data


def _too_large(size: int, limit: int) -> str:
    return (
        f"the file holds {size / 2**20:.1f} MiB, more than the limit of {limit / 2**20:.1f} MiB "
        "(setting knowledge.max_file_mb)"
    )
