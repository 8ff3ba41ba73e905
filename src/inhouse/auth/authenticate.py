"""Credentials -> Principal: an API key or a web session token, checked on every request."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from inhouse.auth.limits import SubjectLimits
from inhouse.auth.policy import Principal, Role
from inhouse.auth.tokens import KEY_PREFIX, token_hash
from inhouse.errors import Unauthorized
from inhouse.store.tables import ApiKey, Group, GroupCollection, Membership, User, WebSession

MAX_TOKEN_CHARS = 256


def principal_for_key(session: Session, secret: str, now: float) -> Principal:
    """The key's principal, or Unauthorized saying why (unknown, revoked, expired, disabled)."""
    if not secret.startswith(KEY_PREFIX) or len(secret) > MAX_TOKEN_CHARS:
        raise Unauthorized("Incorrect API key provided.", code="invalid_api_key")
    row = session.execute(
        select(ApiKey, User)
        .join(User, User.id == ApiKey.user_id)
        .where(ApiKey.key_hash == token_hash(secret))
    ).one_or_none()
    if row is None:
        raise Unauthorized("Incorrect API key provided.", code="invalid_api_key")
    key, user = row
    if key.revoked_at is not None:
        raise Unauthorized("This API key has been revoked.", code="revoked_api_key")
    if key.expires_at is not None and key.expires_at <= now:
        raise Unauthorized("This API key has expired.", code="expired_api_key")
    if user.disabled:
        raise Unauthorized("The account of this API key is disabled.", code="account_disabled")
    return load_principal(session, user, "key", key)


def principal_for_session(session: Session, token: str, now: float) -> tuple[Principal, str]:
    """A signed-in browser's principal and its session's CSRF token hash."""
    if len(token) > MAX_TOKEN_CHARS:
        raise Unauthorized("Your session is not valid; sign in again.", code="invalid_session")
    row = session.execute(
        select(WebSession, User)
        .join(User, User.id == WebSession.user_id)
        .where(WebSession.token_hash == token_hash(token))
    ).one_or_none()
    if row is None:
        raise Unauthorized("Your session is not valid; sign in again.", code="invalid_session")
    web, user = row
    if web.expires_at <= now or user.disabled:
        raise Unauthorized("Your session has expired; sign in again.", code="invalid_session")
    return load_principal(session, user, "session"), web.csrf_hash


def load_principal(session: Session, user: User, via: str, key: ApiKey | None = None) -> Principal:
    """The user's groups (billing group first) and readable collections, within the key's scope."""
    memberships = session.execute(
        select(Group, GroupCollection.collection)
        .join(Membership, Membership.group_id == Group.id)
        .outerjoin(GroupCollection, GroupCollection.group_id == Group.id)
        .where(Membership.user_id == user.id)
        .order_by(Membership.created_at, Group.id)
    ).all()
    groups = list({group.id: group for group, _ in memberships}.values())
    limits = [SubjectLimits.of("key", key)] if key is not None else []
    limits.append(SubjectLimits.of("user", user))
    limits += [SubjectLimits.of("group", group) for group in groups]
    role = Role(user.role)
    collections: frozenset[str] | None = None
    if role is not Role.ADMIN:
        collections = frozenset(c for _, c in memberships if c is not None)
    if key is not None and key.collections is not None:
        scope = frozenset(key.collections)
        collections = scope if collections is None else collections & scope
    return Principal(
        user_id=user.id,
        user_name=user.name,
        role=role,
        via=via,
        key_id=key.id if key else None,
        key_public_id=key.public_id if key else None,
        group_ids=tuple(group.id for group in groups),
        models=None if key is None or key.models is None else frozenset(key.models),
        collections=collections,
        limits=tuple(subject for subject in limits if subject.any),
    )


def local_operator() -> Principal:
    """Who calls when auth is off (loopback only): an admin without an account."""
    return Principal(user_id=None, user_name="local", role=Role.ADMIN, via="local")
