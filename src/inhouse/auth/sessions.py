"""Web sign-in: a password check opens a session (cookie token + CSRF token), both hashed."""

from __future__ import annotations

import hmac
import time

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from inhouse.auth.passwords import verify_password
from inhouse.auth.tokens import new_session_token, token_hash
from inhouse.store.db import Database
from inhouse.store.tables import User, WebSession

COOKIE = "inhouse_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def check_password(db: Database, name: str, password: str) -> User | None:
    """The user if the name exists, is enabled and the password matches; else None.

    The hash is checked outside any transaction: argon2 takes tens of milliseconds, and a
    write lock held that long makes concurrent sign-ins and the usage writer time out."""
    with db.read() as session:
        user = session.scalar(select(User).where(User.name == name))
    stored = user.password_hash if user is not None and not user.disabled else None
    if not verify_password(stored, password):
        return None
    return user


def still_valid(session: Session, checked: User) -> User | None:
    """`checked` as `session` sees it, unless it was disabled, removed or given a new
    password since its password was checked (outside this transaction)."""
    user = session.get(User, checked.id)
    if user is None or user.disabled or user.password_hash != checked.password_hash:
        return None
    return user


def open_session(session: Session, user: User, hours: float) -> tuple[str, str]:
    """(cookie token, CSRF token) of a new session; only their hashes are stored."""
    now = time.time()
    session.execute(delete(WebSession).where(WebSession.expires_at <= now))
    token, csrf = new_session_token(), new_session_token()
    session.add(
        WebSession(
            token_hash=token_hash(token),
            csrf_hash=token_hash(csrf),
            user_id=user.id,
            created_at=now,
            expires_at=now + hours * 3600,
        )
    )
    return token, csrf


def close_session(session: Session, token: str) -> None:
    session.execute(delete(WebSession).where(WebSession.token_hash == token_hash(token)))


def csrf_ok(csrf_hash: str, header: str | None) -> bool:
    return header is not None and hmac.compare_digest(token_hash(header), csrf_hash)
