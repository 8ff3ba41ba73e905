"""Content-addressed GGUF blobs: hashed while copied to a temp file, then renamed into place."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class Staged:
    """Bytes written to a temp file in the blobs folder, with their sha256 and size."""

    path: Path
    sha256: str
    size: int


def blob_name(sha256: str) -> str:
    """The file name of the blob holding the bytes with this sha256."""
    return f"sha256-{sha256}.gguf"


def file_chunks(src: Path) -> Iterator[bytes]:
    """The bytes of `src`, in chunks."""
    with src.open("rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            yield chunk


def hash_file(path: Path) -> tuple[str, int]:
    """(sha256 hex, size) of the file at `path`."""
    digest = hashlib.sha256()
    size = 0
    for chunk in file_chunks(path):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


@contextmanager
def staged(blobs: Path, chunks: Iterable[bytes]) -> Iterator[Staged]:
    """Write `chunks` to a temp file in `blobs`, hashing them; the temp file is gone on exit."""
    blobs.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=blobs, prefix=".incoming-", suffix=".part")
    path = Path(name)
    try:
        digest = hashlib.sha256()
        size = 0
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        yield Staged(path, digest.hexdigest(), size)
    finally:
        path.unlink(missing_ok=True)


def place(blob: Staged, blobs: Path) -> bool:
    """Rename the staged file to its content address; False when those bytes were stored already."""
    target = blobs / blob_name(blob.sha256)
    if target.exists():
        return False
    blob.path.chmod(0o444)
    os.replace(blob.path, target)
    fsync_dir(blobs)
    return True


def fsync_dir(folder: Path) -> None:
    """Make renames inside `folder` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
