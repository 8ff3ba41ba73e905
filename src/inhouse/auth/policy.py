"""The one place that decides "may principal P do X on R"; every route declares its X."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from inhouse.auth.limits import SubjectLimits
from inhouse.errors import Forbidden


class Role(enum.StrEnum):
    ADMIN = "admin"  # everything
    AUDITOR = "auditor"  # reads users, usage and the audit trail; changes nothing but own keys
    MEMBER = "member"  # uses models, manages own keys, sees own usage


class Permission(enum.StrEnum):
    PUBLIC = "public"  # no credentials at all (health, sign-in)
    SIGNED_IN = "signed_in"  # any valid key or session
    MODEL_USE = "model.use"  # inference and model listing
    KEYS_OWN = "keys.own"  # create, list and revoke one's own keys
    USAGE_OWN = "usage.own"  # one's own usage
    DIRECTORY_READ = "directory.read"  # list users, groups and everyone's keys
    DIRECTORY_WRITE = "directory.write"  # users, groups, grants, quotas, anyone's keys
    USAGE_ALL = "usage.all"  # everyone's usage and the savings report
    AUDIT_READ = "audit.read"  # verify and export the audit trail
    SYSTEM_READ = "system.read"  # doctor, settings overview
    KNOWLEDGE_READ = "knowledge.read"  # search and list the collections one may read
    KNOWLEDGE_MANAGE = "knowledge.manage"  # create, delete, upload to and sync collections
    MODEL_MANAGE = "model.manage"  # import models into the store, set and remove aliases
    TUNING_USE = "tuning.use"  # add, read and delete one's own (or shared) tuning data sets
    TUNING_MANAGE = "tuning.manage"  # list and delete everyone's data sets (not read them)


_MEMBER = frozenset(
    {
        Permission.SIGNED_IN,
        Permission.MODEL_USE,
        Permission.KEYS_OWN,
        Permission.USAGE_OWN,
        Permission.KNOWLEDGE_READ,
        Permission.TUNING_USE,
    }
)
GRANTS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission) - {Permission.PUBLIC},
    Role.AUDITOR: _MEMBER
    | {
        Permission.DIRECTORY_READ,
        Permission.USAGE_ALL,
        Permission.AUDIT_READ,
        Permission.SYSTEM_READ,
    },
    Role.MEMBER: _MEMBER,
}


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user, through one key or a web session, with that key's scopes."""

    user_id: int | None  # None: the local operator when auth is off
    user_name: str
    role: Role
    via: str  # "key" | "session" | "local"
    key_id: int | None = None
    key_public_id: str | None = None
    group_ids: tuple[int, ...] = ()  # billing group first
    models: frozenset[str] | None = None  # the key's model scope; None: every model
    collections: frozenset[str] | None = None  # readable collections; None: every one
    limits: tuple[SubjectLimits, ...] = ()  # quotas of the key, the user and their groups

    @property
    def actor(self) -> str:
        """How the audit trail names this principal (never a secret)."""
        who = f"user:{self.user_name}"
        return f"{who} {self.key_public_id}" if self.key_public_id else who

    @property
    def billing_group(self) -> int | None:
        return self.group_ids[0] if self.group_ids else None


def allows(principal: Principal, permission: Permission) -> bool:
    return permission is Permission.PUBLIC or permission in GRANTS[principal.role]


def require(principal: Principal, permission: Permission) -> None:
    if not allows(principal, permission):
        raise Forbidden(f"your role ({principal.role}) does not allow {permission}")


def may_use_model(principal: Principal, model: str) -> bool:
    return principal.models is None or model in principal.models


def require_model(principal: Principal, model: str) -> None:
    if not may_use_model(principal, model):
        raise Forbidden(f"this API key may not use the model {model!r}", param="model")


def may_read_collection(principal: Principal, collection: str) -> bool:
    return principal.collections is None or collection in principal.collections


def may_manage_user(principal: Principal, user_id: int) -> bool:
    """Anyone's keys and account for directory writers; only one's own for everyone else."""
    return allows(principal, Permission.DIRECTORY_WRITE) or principal.user_id == user_id
