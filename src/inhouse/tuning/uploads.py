"""A training file uploaded over the API, streamed to a private temporary file as it arrives.

It is checked from there and its examples stored in the database; the file itself is
deleted either way, so a refused upload leaves nothing behind.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from inhouse.errors import PayloadTooLarge
from inhouse.store.private import FILE_MODE, private_dir


class Upload:
    """One upload being written: a private temporary file that refuses to grow past `limit`."""

    def __init__(self, folder: Path, limit: int) -> None:
        private_dir(folder.parent)
        self.path = private_dir(folder) / f".{secrets.token_hex(12)}.part"
        self.limit = limit
        self.size = 0
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        self._file = os.fdopen(os.open(self.path, flags, FILE_MODE), "wb")

    def write(self, data: bytes) -> None:
        """Append `data`; PayloadTooLarge (and the file gone) once the limit is passed."""
        self.size += len(data)
        if self.size > self.limit:
            self.discard()
            raise PayloadTooLarge(
                f"the file is larger than the limit of {self.limit / 2**20:g} MiB "
                "(setting tuning.max_file_mb)"
            )
        self._file.write(data)

    def read(self) -> bytes:
        """The whole file (at most `limit` bytes)."""
        self._file.close()
        return self.path.read_bytes()

    def discard(self) -> None:
        """Delete the temporary file (again: a no-op)."""
        self._file.close()
        self.path.unlink(missing_ok=True)
