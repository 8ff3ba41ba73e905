"""Owner-only files: the data directory and the database hold key hashes, usage and content."""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def private_dir(path: Path) -> Path:
    """`path`, created owner-only (0700) when missing; an existing directory is kept as it is
    (its owner may have opened it on purpose). Missing parents are created as mkdir -p does."""
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        path.chmod(DIR_MODE)  # the umask may take bits away, never add them: set it exactly
    return path


def private_file(path: Path) -> None:
    """Create `path` empty and owner-only (0600) if missing; take group and other access
    away from an existing one we own (a store written by an older version)."""
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, FILE_MODE)
    try:
        _tighten(fd)
    finally:
        os.close(fd)


def private_sqlite_file(path: Path) -> None:
    """The SQLite database owner-only before SQLite opens it: SQLite gives the WAL and
    shared-memory files it creates later the database file's mode."""
    private_dir(path.parent)
    private_file(path)
    for suffix in SQLITE_SIDE_FILES:
        side = path.with_name(path.name + suffix)
        try:
            fd = os.open(side, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            _tighten(fd)
        finally:
            os.close(fd)


def _tighten(fd: int) -> None:
    if os.fstat(fd).st_mode & 0o077:
        with contextlib.suppress(PermissionError):  # not ours: only its owner may chmod it
            os.fchmod(fd, FILE_MODE)


def secret_key(path: Path, size: int, what: str, *, at_least: int | None = None) -> bytes:
    """The hex key in `path` (mode 0600), created once with `size` random bytes if missing;
    ValueError, naming it as `what` ("the audit key"), unless it holds at least `at_least`
    (default: `size`) bytes of hex."""
    if not path.exists():
        _create_key(path, size)
    try:
        key = bytes.fromhex(path.read_text().strip())
    except ValueError:
        raise ValueError(f"{what} file {path} does not hold a hex key") from None
    if len(key) < (at_least or size):
        raise ValueError(f"{what} in {path} is shorter than {at_least or size} bytes")
    return key


def _create_key(path: Path, size: int) -> None:
    """Write a new key without ever replacing one another process wrote first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".key-")  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(size) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)  # fails if the name exists: a key another process made first wins
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
