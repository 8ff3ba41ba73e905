"""The bootstrap admin key: generated on first start, printed once, stored only as a hash."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_PREFIX = "ih-"
KEY_FILE = "admin_key.sha256"


def hash_key(key: str) -> str:
    # keys are 256-bit random strings, so a fast hash is enough (no password stretching needed)
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class AdminKeyStore:
    """One hashed key in the data directory, written atomically with owner-only permissions."""

    def __init__(self, home: Path) -> None:
        self.path = home / KEY_FILE

    def exists(self) -> bool:
        return self.path.is_file()

    def create(self) -> str:
        """Write a new key's hash (replacing any old one) and return the key, once."""
        key = new_key()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(hash_key(key) + "\n")
        os.replace(tmp, self.path)
        return key

    def ensure(self) -> str | None:
        """The new key if none existed yet, else None (the old one stays valid)."""
        return None if self.exists() else self.create()

    def verifier(self) -> KeyVerifier:
        return KeyVerifier(self.path.read_text().strip())


class KeyVerifier:
    def __init__(self, stored_hash: str) -> None:
        self._hash = stored_hash

    def check(self, key: str) -> bool:
        return hmac.compare_digest(hash_key(key), self._hash)
