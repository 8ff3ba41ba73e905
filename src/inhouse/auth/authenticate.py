"""Credentials -> Principal: an API key or a web session token, checked on every request."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, select, update
from sqlalchemy.orm import Session

from inhouse.auth.limits import LIMIT_FIELDS, SubjectLimits
from inhouse.auth.policy import Principal, Role
from inhouse.auth.tokens import KEY_PREFIX, token_hash
from inhouse.errors import Unauthorized
from inhouse.store.tables import ApiKey, Group, GroupCollection, Membership, User, WebSession

MAX_TOKEN_CHARS = 256


KEYS = cast(Table, ApiKey.__table__)
USERS = cast(Table, User.__table__)
GROUPS = cast(Table, Group.__table__)
SESSIONS = cast(Table, WebSession.__table__)

# Core statements, built once: authentication runs on every request, and building ORM
# queries each time costs more than the database does
KEY_ROWS = select(
    KEYS.c.id,
    KEYS.c.public_id,
    KEYS.c.models,
    KEYS.c.collections,
    KEYS.c.expires_at,
    KEYS.c.revoked_at,
    *(KEYS.c[name] for name in LIMIT_FIELDS),
    USERS.c.id.label("user_id"),
    USERS.c.name.label("user_name"),
    USERS.c.role,
    USERS.c.disabled,
    *(USERS.c[name].label(f"user_{name}") for name in LIMIT_FIELDS),
).join(USERS, USERS.c.id == KEYS.c.user_id)
KEY_LOOKUP = KEY_ROWS.where(KEYS.c.key_hash == bindparam("key_hash"))
KEY_BY_ID = KEY_ROWS.where(KEYS.c.id == bindparam("key_id"))
SESSION_LOOKUP = (
    select(
        SESSIONS.c.csrf_hash,
        SESSIONS.c.expires_at,
        USERS.c.id.label("user_id"),
        USERS.c.name.label("user_name"),
        USERS.c.role,
        USERS.c.disabled,
        *(USERS.c[name].label(f"user_{name}") for name in LIMIT_FIELDS),
    )
    .join(USERS, USERS.c.id == SESSIONS.c.user_id)
    .where(SESSIONS.c.token_hash == bindparam("token_hash"))
)
GROUP_LOOKUP = (
    select(GROUPS.c.id, *(GROUPS.c[name] for name in LIMIT_FIELDS), GroupCollection.collection)
    .join(Membership, Membership.group_id == GROUPS.c.id)
    .outerjoin(GroupCollection, GroupCollection.group_id == GROUPS.c.id)
    .where(Membership.user_id == bindparam("user_id"))
    .order_by(Membership.created_at, GROUPS.c.id)
)


def principal_for_key(session: Session, secret: str, now: float) -> Principal:
    """The key's principal, or Unauthorized saying why (unknown, revoked, expired, disabled)."""
    if not secret.startswith(KEY_PREFIX) or len(secret) > MAX_TOKEN_CHARS:
        raise Unauthorized("Incorrect API key provided.", code="invalid_api_key")
    connection = session.connection()
    row = connection.execute(KEY_LOOKUP, {"key_hash": token_hash(secret)}).one_or_none()
    return _key_principal(connection, row, now)


def principal_for_key_id(session: Session, key_id: int, now: float) -> Principal:
    """The principal of the key with this row id (a key whose secret nobody holds, as a
    widget's), checked exactly as a presented key is."""
    connection = session.connection()
    row = connection.execute(KEY_BY_ID, {"key_id": key_id}).one_or_none()
    return _key_principal(connection, row, now)


def _key_principal(connection: Connection, row: Any, now: float) -> Principal:
    if row is None:
        raise Unauthorized("Incorrect API key provided.", code="invalid_api_key")
    if row.revoked_at is not None:
        raise Unauthorized("This API key has been revoked.", code="revoked_api_key")
    if row.expires_at is not None and row.expires_at <= now:
        raise Unauthorized("This API key has expired.", code="expired_api_key")
    if row.disabled:
        raise Unauthorized("The account of this API key is disabled.", code="account_disabled")
    key_limits = SubjectLimits("key", row.id, *(row._mapping[name] for name in LIMIT_FIELDS))
    return _principal(connection, row, "key", key_limits)


def principal_for_session(session: Session, token: str, now: float) -> tuple[Principal, str]:
    """A signed-in browser's principal and its session's CSRF token hash."""
    if len(token) > MAX_TOKEN_CHARS:
        raise Unauthorized("Your session is not valid; sign in again.", code="invalid_session")
    connection = session.connection()
    row = connection.execute(SESSION_LOOKUP, {"token_hash": token_hash(token)}).one_or_none()
    if row is None:
        raise Unauthorized("Your session is not valid; sign in again.", code="invalid_session")
    if row.expires_at <= now or row.disabled:
        raise Unauthorized("Your session has expired; sign in again.", code="invalid_session")
    return _principal(connection, row, "session", None), row.csrf_hash


def _principal(
    connection: Connection, row: Any, via: str, key_limits: SubjectLimits | None
) -> Principal:
    """The user's groups (billing group first) and collections, within the key's scope."""
    memberships = connection.execute(GROUP_LOOKUP, {"user_id": row.user_id}).all()
    groups: dict[int, SubjectLimits] = {}
    granted: set[str] = set()
    for group in memberships:
        groups.setdefault(
            group.id, SubjectLimits("group", group.id, *(group._mapping[n] for n in LIMIT_FIELDS))
        )
        if group.collection is not None:
            granted.add(group.collection)
    role = Role(row.role)
    collections: frozenset[str] | None = None if role is Role.ADMIN else frozenset(granted)
    is_key = key_limits is not None
    if is_key and row.collections is not None:
        scope = frozenset(row.collections)
        collections = scope if collections is None else collections & scope
    user_limits = SubjectLimits(
        "user", row.user_id, *(row._mapping[f"user_{n}"] for n in LIMIT_FIELDS)
    )
    limits = [key_limits] if key_limits is not None else []
    limits += [user_limits, *groups.values()]
    return Principal(
        user_id=row.user_id,
        user_name=row.user_name,
        role=role,
        via=via,
        key_id=row.id if is_key else None,
        key_public_id=row.public_id if is_key else None,
        group_ids=tuple(groups),
        models=frozenset(row.models) if is_key and row.models is not None else None,
        collections=collections,
        limits=tuple(subject for subject in limits if subject.any),
    )


def local_operator() -> Principal:
    """Who calls when auth is off (loopback only): an admin without an account."""
    return Principal(user_id=None, user_name="local", role=Role.ADMIN, via="local")


TOUCH_KEY = (
    update(KEYS).where(KEYS.c.id == bindparam("key_id")).values(last_used_at=bindparam("now"))
)


def mark_keys_used(session: Session, key_ids: Iterable[int]) -> None:
    """Note that these keys were just used (their `last_used_at`), in the caller's transaction.
    In id order, so that concurrent writers lock the rows in the same order."""
    now = time.time()
    rows = [{"key_id": key_id, "now": now} for key_id in sorted(key_ids)]
    if rows:
        session.connection().execute(TOUCH_KEY, rows)
