"""Connector passwords: sealed with AES-GCM under a key kept outside the database, and masked
wherever a URL or an error message is shown.

The key file (hex, mode 600, created on first use like the audit key) sits in the data
directory; the database holds only the URL without its password plus the sealed password, so
a copy of the database alone reveals nothing.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote, quote_plus

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.engine import URL

from inhouse.errors import InhouseError
from inhouse.store.private import secret_key

KEY_BYTES = 32
NONCE_BYTES = 12
MASK = "***"
# binds a sealed password to its use, so a blob from elsewhere does not decrypt here
ASSOCIATED = b"inhouse connector password v1"
# user:password@ in any URL-looking text (error messages may quote the URL they failed on)
URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)[^\s@]*@")


class Vault:
    """Seals and opens connector passwords with the key in `key_path` (made if missing);
    with no key file configured, a URL with a password is refused."""

    def __init__(self, key_path: Path | None) -> None:
        self.key_path = key_path
        self._key: bytes | None = None

    def seal(self, password: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self._load()).encrypt(nonce, password.encode("utf-8"), ASSOCIATED)
        return base64.b64encode(nonce + sealed).decode("ascii")

    def open(self, sealed: str) -> str:
        raw = base64.b64decode(sealed)
        try:
            plain = AESGCM(self._load()).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], ASSOCIATED)
        except InvalidTag:
            raise InhouseError(
                f"a connector's password does not open with the key in {self.key_path}: "
                "connect it again with its password"
            ) from None
        return plain.decode("utf-8")

    def _load(self) -> bytes:
        if self.key_path is None:
            raise InhouseError("no knowledge.connector_key_file is set: passwords cannot be kept")
        if self._key is None:
            self._key = load_key(self.key_path)
        return self._key


def load_key(path: Path) -> bytes:
    """The AES key in `path` (hex); created once (32 random bytes, mode 0600) if missing."""
    try:
        key = secret_key(path, KEY_BYTES, "the connector key")
    except ValueError as exc:
        raise InhouseError(str(exc)) from None
    if len(key) != KEY_BYTES:
        raise InhouseError(f"the connector key in {path} is not {KEY_BYTES} bytes long")
    return key


def shown(url: URL, has_password: bool) -> str:
    """The URL as people see it: the password, if any, as ***."""
    # render_as_string masks any password as ***; the placeholder is never shown
    return url.set(password="-" if has_password else None).render_as_string(hide_password=True)


def scrub(message: str, hidden: Iterable[str] = ()) -> str:
    """`message` with every `hidden` string (raw or URL-quoted) and URL password masked."""
    for secret in hidden:
        if secret:
            for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
                message = message.replace(form, MASK)
    return URL_PASSWORD.sub(rf"\g<head>{MASK}@", message)
