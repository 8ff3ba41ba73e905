"""Passwords for the web UI: argon2id hashes, never the password itself."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from inhouse.errors import InvalidRequest

MIN_LENGTH = 10
MAX_LENGTH = 1024
_HASHER = PasswordHasher()  # stateless and thread-safe: its parameters are constants


def check_strength(password: str) -> None:
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise InvalidRequest(
            f"a password needs {MIN_LENGTH} to {MAX_LENGTH} characters", param="password"
        )


def hash_password(password: str) -> str:
    check_strength(password)
    return _HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """True when `password` matches; a user without a password never matches."""
    if stored is None:
        # spend the same time as a real check, so timing does not tell which users exist
        _HASHER.hash("x" * MIN_LENGTH)
        return False
    try:
        return _HASHER.verify(stored, password[:MAX_LENGTH])
    except (VerificationError, InvalidHashError):
        return False
