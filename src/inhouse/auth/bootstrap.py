"""First start: an admin account and its key, printed once; later, a replacement key."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import func, select

from inhouse.auth.directory import Directory
from inhouse.auth.policy import Role
from inhouse.store.db import Database
from inhouse.store.tables import ApiKey, User

if TYPE_CHECKING:
    from inhouse.audit.trail import AuditTrail

ADMIN = "admin"
BOOTSTRAP_KEY_NAME = "admin key (inhouse serve)"


def ensure_admin(db: Database, audit: AuditTrail, *, new_key: bool = False) -> str | None:
    """The new admin key when there was no user yet (or `new_key`), else None."""
    with db.write() as session:
        directory = Directory(session, audit, "system:bootstrap")
        users = session.scalar(select(func.count()).select_from(User)) or 0
        if users == 0:
            directory.add_user(ADMIN, Role.ADMIN.value)
        elif not new_key:
            return None
        admin = session.scalar(
            select(User).where(User.role == Role.ADMIN.value).order_by(User.id).limit(1)
        )
        if admin is None:
            admin = directory.add_user(ADMIN + "-1", Role.ADMIN.value)
        old = session.scalars(
            select(ApiKey).where(
                ApiKey.user_id == admin.id,
                ApiKey.name == BOOTSTRAP_KEY_NAME,
                ApiKey.revoked_at.is_(None),
            )
        )
        for key in list(old):
            directory.revoke_key(key.public_id)
        _, secret = directory.create_key(admin.name, name=BOOTSTRAP_KEY_NAME)
        return secret
