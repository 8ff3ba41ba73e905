"""Random tokens and their stored form: only a hash of an API key or session token is kept."""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "ih-"


def token_hash(token: str) -> str:
    # tokens are 256-bit random strings, so a fast hash is enough (no stretching needed)
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_public_id() -> str:
    """The key's name in lists and in the audit trail: safe to show, useless to call with."""
    return "key_" + secrets.token_hex(6)


def new_session_token() -> str:
    return secrets.token_urlsafe(32)
