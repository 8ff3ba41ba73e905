"""Users, groups, grants and API keys; every change is audited in the same transaction."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from inhouse.audit.trail import AuditTrail
from inhouse.auth.limits import LimitsUpdate
from inhouse.auth.names import check_name
from inhouse.auth.passwords import hash_password
from inhouse.auth.policy import Role
from inhouse.auth.tokens import new_api_key, new_public_id, token_hash
from inhouse.errors import Conflict, InvalidRequest, NotFound
from inhouse.store.tables import ApiKey, Group, GroupCollection, Membership, User, WebSession


def parse_role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        roles = ", ".join(r.value for r in Role)
        raise InvalidRequest(f"role must be one of: {roles}", param="role") from None


class Directory:
    """The identity tables as one transaction's caller (`actor`) may change them."""

    def __init__(
        self, session: Session, audit: AuditTrail, actor: str, ip: str | None = None
    ) -> None:
        self.session = session
        self.audit = audit
        self.actor = actor
        self.ip = ip

    def _record(self, action: str, target: str, **detail: Any) -> None:
        self.audit.record(self.session, self.actor, action, target, detail, self.ip)

    # ----- users ---------------------------------------------------------------------------

    def user(self, name: str) -> User:
        found = self.session.scalar(select(User).where(User.name == name))
        if found is None:
            raise NotFound(f"no user named {name!r}")
        return found

    def user_by_id(self, user_id: int) -> User:
        found = self.session.get(User, user_id)
        if found is None:
            raise NotFound(f"no user with id {user_id}")
        return found

    def users(self) -> list[User]:
        return list(self.session.scalars(select(User).order_by(User.name)))

    def add_user(
        self,
        name: str,
        role: str = "member",
        *,
        password: str | None = None,
        groups: Sequence[str] = (),
    ) -> User:
        check_name("user", name)
        if self.session.scalar(select(User.id).where(User.name == name)) is not None:
            raise InvalidRequest(f"a user named {name!r} already exists", param="name")
        user = User(
            name=name,
            role=parse_role(role).value,
            password_hash=None if password is None else hash_password(password),
            created_at=time.time(),
        )
        self.session.add(user)
        self.session.flush()
        self._record("user.create", name, role=user.role, has_password=password is not None)
        for group in groups:
            if self.session.scalar(select(Group.id).where(Group.name == group)) is None:
                self.add_group(group)  # `users add alice --group legal` makes the team too
            self.join(name, group)
        return user

    def update_user(
        self,
        name: str,
        *,
        role: str | None = None,
        disabled: bool | None = None,
        limits: LimitsUpdate | None = None,
    ) -> User:
        user = self.user(name)
        new_role = user.role if role is None else parse_role(role).value
        if new_role != Role.ADMIN:
            self._keep_an_admin(user, "demote")
        if disabled:
            self._keep_an_admin(user, "disable")
        changed: dict[str, Any] = {}
        if role is not None:
            user.role = changed["role"] = new_role
        if disabled is not None:
            user.disabled = changed["disabled"] = disabled
            if disabled:
                self._end_sessions(user.id)
        if limits is not None:
            changed.update(limits.apply(user))
        if changed:
            self._record("user.update", name, **changed)
        return user

    def set_password(self, name: str, password: str) -> None:
        user = self.user(name)
        user.password_hash = hash_password(password)
        self._end_sessions(user.id)
        self._record("user.password", name)

    def remove_user(self, name: str) -> None:
        user = self.user(name)
        self._keep_an_admin(user, "remove")
        self.session.delete(user)
        self._record("user.delete", name)

    def _keep_an_admin(self, user: User, change: str) -> None:
        """Refuse (409) to `change` the last enabled admin: nobody could administer then."""
        if user.role != Role.ADMIN or user.disabled:
            return
        # FOR UPDATE: two admins demoting each other at once on PostgreSQL queue here
        query = (
            select(User.id)
            .where(User.role == Role.ADMIN, User.disabled.is_(False))
            .with_for_update()
        )
        if list(self.session.scalars(query)) == [user.id]:
            raise Conflict(
                f"cannot {change} {user.name!r}: it is the last enabled admin "
                "(make another user admin first)",
                code="last_admin",
            )

    def _end_sessions(self, user_id: int) -> None:
        self.session.execute(delete(WebSession).where(WebSession.user_id == user_id))

    # ----- groups --------------------------------------------------------------------------

    def group(self, name: str) -> Group:
        found = self.session.scalar(select(Group).where(Group.name == name))
        if found is None:
            raise NotFound(f"no group named {name!r}")
        return found

    def groups(self) -> list[Group]:
        return list(self.session.scalars(select(Group).order_by(Group.name)))

    def add_group(self, name: str) -> Group:
        check_name("group", name)
        if self.session.scalar(select(Group.id).where(Group.name == name)) is not None:
            raise InvalidRequest(f"a group named {name!r} already exists", param="name")
        group = Group(name=name, created_at=time.time())
        self.session.add(group)
        self.session.flush()
        self._record("group.create", name)
        return group

    def update_group(self, name: str, limits: LimitsUpdate) -> Group:
        group = self.group(name)
        changed = limits.apply(group)
        if changed:
            self._record("group.update", name, **changed)
        return group

    def remove_group(self, name: str) -> None:
        self.session.delete(self.group(name))
        self._record("group.delete", name)

    def members(self, group: Group) -> list[str]:
        query = (
            select(User.name)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.group_id == group.id)
            .order_by(User.name)
        )
        return list(self.session.scalars(query))

    def groups_of(self, user: User) -> list[str]:
        """The user's groups, billing group (the first joined) first."""
        query = (
            select(Group.name)
            .join(Membership, Membership.group_id == Group.id)
            .where(Membership.user_id == user.id)
            .order_by(Membership.created_at, Group.name)
        )
        return list(self.session.scalars(query))

    def join(self, user_name: str, group_name: str) -> None:
        user, group = self.user(user_name), self.group(group_name)
        if self.session.get(Membership, (user.id, group.id)) is None:
            self.session.add(Membership(user_id=user.id, group_id=group.id, created_at=time.time()))
            self._record("group.join", group_name, user=user_name)

    def leave(self, user_name: str, group_name: str) -> None:
        user, group = self.user(user_name), self.group(group_name)
        membership = self.session.get(Membership, (user.id, group.id))
        if membership is None:
            raise NotFound(f"{user_name!r} is not in the group {group_name!r}")
        self.session.delete(membership)
        self._record("group.leave", group_name, user=user_name)

    def collections(self, group: Group) -> list[str]:
        query = select(GroupCollection.collection).where(GroupCollection.group_id == group.id)
        return sorted(self.session.scalars(query))

    def grant(self, group_name: str, collection: str) -> None:
        group = self.group(group_name)
        check_name("collection", collection)
        if self.session.get(GroupCollection, (group.id, collection)) is None:
            self.session.add(GroupCollection(group_id=group.id, collection=collection))
            self._record("group.grant", group_name, collection=collection)

    def revoke_grant(self, group_name: str, collection: str) -> None:
        group = self.group(group_name)
        grant = self.session.get(GroupCollection, (group.id, collection))
        if grant is None:
            raise NotFound(f"the group {group_name!r} has no grant on {collection!r}")
        self.session.delete(grant)
        self._record("group.revoke", group_name, collection=collection)

    # ----- API keys ------------------------------------------------------------------------

    def create_key(
        self,
        user_name: str,
        *,
        name: str = "",
        models: Sequence[str] | None = None,
        collections: Sequence[str] | None = None,
        expires_at: float | None = None,
        limits: LimitsUpdate | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key for the user; the secret is returned here, once, and stored hashed."""
        user = self.user(user_name)
        now = time.time()
        if expires_at is not None and expires_at <= now:
            raise InvalidRequest("a key's expiry must be in the future", param="expires_at")
        if len(name) > 128:
            raise InvalidRequest("a key's name must be at most 128 characters", param="name")
        secret = new_api_key()
        key = ApiKey(
            public_id=new_public_id(),
            key_hash=token_hash(secret),
            user_id=user.id,
            name=name,
            models=None if models is None else sorted(set(models)),
            collections=None if collections is None else sorted(set(collections)),
            created_at=now,
            expires_at=expires_at,
        )
        applied = limits.apply(key) if limits is not None else {}
        self.session.add(key)
        self.session.flush()
        self._record(
            "key.create",
            key.public_id,
            user=user_name,
            models=key.models,
            collections=key.collections,
            expires_at=expires_at,
            **applied,
        )
        return key, secret

    def key(self, public_id: str, owner_id: int | None = None) -> ApiKey:
        """A key by its public id; with `owner_id`, only that user's (else: not found)."""
        query = select(ApiKey).where(ApiKey.public_id == public_id)
        if owner_id is not None:
            query = query.where(ApiKey.user_id == owner_id)
        found = self.session.scalar(query)
        if found is None:
            raise NotFound(f"no API key {public_id!r}")
        return found

    def keys(self, owner_id: int | None = None) -> list[ApiKey]:
        query = select(ApiKey).order_by(ApiKey.created_at)
        if owner_id is not None:
            query = query.where(ApiKey.user_id == owner_id)
        return list(self.session.scalars(query))

    def update_key(
        self, public_id: str, limits: LimitsUpdate, owner_id: int | None = None
    ) -> ApiKey:
        key = self.key(public_id, owner_id)
        changed = limits.apply(key)
        if changed:
            self._record("key.update", public_id, **changed)
        return key

    def revoke_key(self, public_id: str, owner_id: int | None = None) -> ApiKey:
        key = self.key(public_id, owner_id)
        if key.revoked_at is None:
            key.revoked_at = time.time()
            self._record("key.revoke", public_id)
        return key
