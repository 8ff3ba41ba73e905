"""Files uploaded into a collection, kept owner-only under the data directory.

A file is written as it arrives to a private temporary file in its collection's folder
(`<files_dir>/<collection id>/`), counted and hashed on the way; past the size limit it is
deleted at once. Once indexed it is renamed to its content hash. Nothing the client sends
(its file name least of all) ever becomes part of a path.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from inhouse.errors import InvalidRequest, PayloadTooLarge
from inhouse.store.private import FILE_MODE, private_dir

PART_SUFFIX = ".part"
MAX_NAME_BYTES = 255  # a file name on common file systems; KnowledgeDocument.source holds more


class Receiving:
    """One upload being written: a private temporary file that refuses to grow past `limit`."""

    def __init__(self, folder: Path, limit: int) -> None:
        self.folder = folder
        self.limit = limit
        self.path = folder / f".{secrets.token_hex(12)}{PART_SUFFIX}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        self._file = os.fdopen(os.open(self.path, flags, FILE_MODE), "wb")
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        """Append `data`; PayloadTooLarge (and the file gone) once the limit is passed."""
        self.size += len(data)
        if self.size > self.limit:
            self.discard()
            raise PayloadTooLarge(
                f"the file is larger than the limit of {self.limit / 2**20:g} MiB "
                "(setting knowledge.max_file_mb)"
            )
        self._hash.update(data)
        self._file.write(data)

    def finish(self) -> str:
        """Flush the file to disk; its SHA-256 (hex)."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return self._hash.hexdigest()

    def read(self) -> bytes:
        return self.path.read_bytes()

    def discard(self) -> None:
        """Delete the temporary file (again: a no-op)."""
        self._file.close()
        self.path.unlink(missing_ok=True)


class UploadStore:
    """The uploaded files of every collection; one lock orders keeping against releasing."""

    def __init__(self, root: Path, limit: int) -> None:
        self.root = root
        self.limit = limit
        self._lock = threading.Lock()

    def folder(self, collection_id: int) -> Path:
        private_dir(self.root)
        return private_dir(self.root / str(collection_id))

    def receive(self, collection_id: int) -> Receiving:
        return Receiving(self.folder(collection_id), self.limit)

    def keep(self, received: Receiving, digest: str) -> Path:
        """Rename the finished upload to its content hash (the same bytes may be there)."""
        target = received.folder / digest
        with self._lock:
            os.replace(received.path, target)
        return target

    def release(self, collection_id: int, digest: str, referenced: Callable[[], bool]) -> None:
        """Delete the stored file `digest` unless a document still `referenced()` it."""
        if not digest:
            return
        with self._lock:
            if not referenced():
                (self.root / str(collection_id) / digest).unlink(missing_ok=True)

    def drop(self, collection_id: int) -> None:
        """Delete the collection's folder with every file in it."""
        with self._lock:
            shutil.rmtree(self.root / str(collection_id), ignore_errors=True)


def upload_source(filename: str) -> str:
    """The document name of an uploaded file: the last part of the client's file name.

    Browsers send only that part; a path in it means nothing on this machine, and a name
    without `/` can never be taken for a file of a synced folder (whose sources are absolute)."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if name in ("", ".", ".."):
        raise InvalidRequest("the uploaded file has no name", param="file")
    if "\x00" in name or len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise InvalidRequest(
            f"the file name must be at most {MAX_NAME_BYTES} bytes of text", param="file"
        )
    return name
