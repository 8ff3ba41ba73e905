"""Rows -> JSON for the admin API; never a secret or a hash."""

from __future__ import annotations

from typing import Any

from inhouse.auth.directory import Directory
from inhouse.auth.limits import limits_of
from inhouse.store.tables import ApiKey, Group, User


def user_view(directory: Directory, user: User) -> dict[str, Any]:
    return {
        "name": user.name,
        "role": user.role,
        "disabled": user.disabled,
        "has_password": user.password_hash is not None,
        "groups": directory.groups_of(user),
        "created_at": user.created_at,
        "limits": limits_of(user),
    }


def group_view(directory: Directory, group: Group) -> dict[str, Any]:
    return {
        "name": group.name,
        "members": directory.members(group),
        "collections": directory.collections(group),
        "created_at": group.created_at,
        "limits": limits_of(group),
    }


def key_view(directory: Directory, key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.public_id,
        "name": key.name,
        "user": directory.user_by_id(key.user_id).name,
        "models": key.models,
        "collections": key.collections,
        "created_at": key.created_at,
        "expires_at": key.expires_at,
        "revoked_at": key.revoked_at,
        "last_used_at": key.last_used_at,
        "limits": limits_of(key),
    }
