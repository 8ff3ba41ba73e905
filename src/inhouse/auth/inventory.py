"""What credentials are live: the keys that still open the door and the admins who hold one."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select

from inhouse.auth.policy import Role
from inhouse.store.db import Database
from inhouse.store.tables import ApiKey, User


@dataclass(frozen=True)
class ActiveKey:
    """A key that authenticates now: not revoked, not expired, its user enabled."""

    public_id: str
    user_id: int
    expires_at: float | None


@dataclass(frozen=True)
class Admin:
    """An enabled admin account."""

    user_id: int
    has_password: bool


def active_keys(db: Database, now: float) -> list[ActiveKey]:
    """Every key that would authenticate at `now`."""
    query = (
        select(ApiKey.public_id, ApiKey.user_id, ApiKey.expires_at)
        .join(User, User.id == ApiKey.user_id)
        .where(ApiKey.revoked_at.is_(None), User.disabled.is_(False))
        .where(or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now))
    )
    with db.read() as session:
        rows = session.execute(query).all()
    return [ActiveKey(row.public_id, row.user_id, row.expires_at) for row in rows]


def enabled_admins(db: Database) -> list[Admin]:
    """Every admin account that is not disabled."""
    query = select(User.id, User.password_hash).where(
        User.role == Role.ADMIN.value, User.disabled.is_(False)
    )
    with db.read() as session:
        rows = session.execute(query).all()
    return [Admin(row.id, bool(row.password_hash)) for row in rows]
